"""One backward call, then the script fails."""
import torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * 3).sum()
loss.backward()
print("w.grad =", w.grad.tolist())


def check(grad):
    raise ValueError(f"deliberate failure, grad was {grad}")  # raising line


check(w.grad.tolist())  # calling line
