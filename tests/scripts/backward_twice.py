"""The second backward call raises in torch: the graph was freed by the first."""
import torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * w).sum()
loss.backward()
loss.backward()  # second call
