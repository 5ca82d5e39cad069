"""Prints final numbers in full precision, to compare plain python with graphexplain trace."""
import torch

torch.manual_seed(0)
x = torch.rand(4, requires_grad=True)
w = torch.rand(4, dtype=torch.float64, requires_grad=True)
loss = ((x.double() * w).sin() ** 2).mean() + (x * 3).exp().sum()
loss.backward()
loss = (w.tanh() * x).sum()
loss.backward()
print(repr(loss.item()))
print(x.grad.tolist())
print(w.grad.tolist())
