"""Derivatives with respect to an intermediate tensor h, not a leaf: first
dy/dh with create_graph=True, then dy/dh and dy/dx together (x lies behind
h as well as beside it), then d(sum dy/dh)/dh."""
import torch

x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
h = torch.sin(x) * 2
y = (h ** 3).sum() + (h * x).sum()
(dy_dh,) = torch.autograd.grad(y, h, create_graph=True)
_, dy_dx = torch.autograd.grad(y, [h, x], retain_graph=True)
(d2y_dh2,) = torch.autograd.grad(dy_dh.sum(), h)

print("dy/dh:", [round(v, 10) for v in dy_dh.tolist()])
print("dy/dx:", [round(v, 10) for v in dy_dx.tolist()])
print("d2y/dh2:", [round(v, 10) for v in d2y_dh2.tolist()])
print("x.grad is None:", x.grad is None)
