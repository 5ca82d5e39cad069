"""A hand-written RNN: the hidden states written row by row into one tensor."""

import torch

torch.manual_seed(0)
T, H, D = 5, 3, 2
x = torch.randn(T, D, dtype=torch.float64)
W = torch.randn(H, D, dtype=torch.float64, requires_grad=True)
U = torch.randn(H, H, dtype=torch.float64, requires_grad=True)

h = torch.zeros(T, H, dtype=torch.float64)
for t in range(T):
    # h[t - 1] is cloned: the product keeps it for U's gradient, and h is written again
    h[t] = torch.tanh(W @ x[t] + U @ h[t - 1].clone())

loss = h.pow(2).sum()
loss.backward()
print(f"loss {loss.item():.6f}")
