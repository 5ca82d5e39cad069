"""A Hessian-vector product by double backward: g = ∇f(w) with
create_graph=True, then the gradient of g·v with respect to w is H·v."""
import torch

w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
A = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]], dtype=torch.float64)
v = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)

f = 0.5 * (w @ (A @ w)) + (w ** 3).sum()
(g,) = torch.autograd.grad(f, w, create_graph=True)
(hv,) = torch.autograd.grad(g @ v, w)

print("gradient:", g.tolist())
print("Hessian times v:", hv.tolist())
print("expected:", (A @ v + 6 * w.detach() * v).tolist())
