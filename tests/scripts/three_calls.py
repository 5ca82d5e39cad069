"""Three backward calls; call k has loss = sum(w * k), so loss = 2k and w.grad gains k."""
import torch

w = torch.ones(2, requires_grad=True)
for k in (1, 2, 3):
    loss = (w * k).sum()
    loss.backward()
print("w.grad =", w.grad.tolist())
