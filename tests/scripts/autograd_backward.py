"""Calls torch.autograd.backward(...) instead of loss.backward()."""
import torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * w).sum()
torch.autograd.backward(loss)  # the call under test
print("w.grad =", w.grad.tolist())
