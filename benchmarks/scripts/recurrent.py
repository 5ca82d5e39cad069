"""An nn.GRU and an nn.LSTM on a short sequence, one backward call each (benchmarks/speed.py)."""
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(8, 4, 16)  # (time, batch, features)
gru = nn.GRU(16, 32)
lstm = nn.LSTM(16, 32)
out, _ = gru(x)
out.pow(2).mean().backward()
out, _ = lstm(x)
out.pow(2).mean().backward()
print("done")
