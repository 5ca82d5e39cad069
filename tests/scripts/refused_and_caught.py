"""torch refuses the only backward call (a non-scalar root), and the script catches it."""
import torch

w = torch.ones(2, requires_grad=True)
z = w * 2
try:
    z.backward()
except RuntimeError:
    print("caught")
