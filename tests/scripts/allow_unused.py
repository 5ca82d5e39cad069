"""torch.autograd.grad with an input the output does not depend on:
allow_unused=True returns None for it, materialize_grads=True zeros."""
import torch

a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
b = torch.tensor([3.0, -1.0], dtype=torch.float64, requires_grad=True)
unused = torch.tensor([5.0, 6.0], dtype=torch.float64, requires_grad=True)
out = (a * b).sum() + a.exp().sum()

da, db, dunused = torch.autograd.grad(out, [a, b, unused], retain_graph=True, allow_unused=True)
print("da:", [round(v, 10) for v in da.tolist()], "db:", db.tolist(), "dunused:", dunused)
da, dunused = torch.autograd.grad(out, [a, unused], materialize_grads=True)
print("da:", [round(v, 10) for v in da.tolist()], "dunused:", dunused.tolist())
