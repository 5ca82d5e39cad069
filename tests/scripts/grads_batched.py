"""torch.autograd.grad(is_grads_batched=True): one vector-Jacobian product
per row of grad_outputs, computed under vmap. Here the rows are the
identity, so the result is the whole Jacobian of y = x**2."""
import torch

x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
y = x ** 2
(jacobian,) = torch.autograd.grad(y, x, grad_outputs=torch.eye(3, dtype=torch.float64), is_grads_batched=True)
print("jacobian:", jacobian.tolist())
