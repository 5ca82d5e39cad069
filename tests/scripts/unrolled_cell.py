"""One nn.RNNCell applied step by step (an unrolled loop): the same module
called twelve times, each call's output feeding the next."""
import torch
from torch import nn

torch.manual_seed(0)
cell = nn.RNNCell(3, 4).double()
inputs = torch.randn(12, 2, 3, dtype=torch.float64)
state = torch.zeros(2, 4, dtype=torch.float64)
for step in inputs:
    state = cell(step, state)
loss = state.pow(2).sum()
loss.backward()
print("loss:", round(loss.item(), 6))
