"""A hand-written RNN over 20 steps: the hidden state is reassigned each
step, so every step's nodes but the last have no variable of their own."""
import torch

torch.manual_seed(0)
W = torch.randn(3, 4, requires_grad=True)
U = torch.randn(4, 4, requires_grad=True)
x = torch.randn(20, 1, 3)
h = torch.zeros(1, 4)
for t in range(20):
    h = torch.tanh(x[t] @ W + h @ U * 0.5)
loss = h.sum()
loss.backward()
