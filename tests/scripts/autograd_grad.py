"""Calls torch.autograd.grad(...), which returns the gradient and leaves .grad alone."""
import torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * w).sum()
(dloss_dw,) = torch.autograd.grad(loss, [w])  # the call under test
print("dloss/dw =", dloss_dw.tolist())
print("w.grad is None:", w.grad is None)
