"""Tensors on the meta device: shapes only, no data; backward still runs."""
import torch
from _state import save

torch.manual_seed(0)
x = torch.empty(3, 4, device="meta", requires_grad=True)
(x * 2).sum().backward()
print(tuple(x.grad.shape), x.grad.device)
save(rng_only=torch.zeros(()))
