"""autograd.grad written over several lines, twice: the second call's root is
dydx[0], which no variable names (tests/test_autograd_grad.py)."""
import torch

x = torch.ones(3, 4).requires_grad_(True) * 2
y = x ** 2
weight = torch.ones(y.size())
dydx = torch.autograd.grad(outputs=y,
                           inputs=x,  # a comment inside the call
                           grad_outputs=weight,
                           create_graph=True)
d2ydx2 = torch.autograd.grad(outputs=dydx[0],
                             inputs=x,
                             grad_outputs=weight)
print(d2ydx2[0].sum().item())
