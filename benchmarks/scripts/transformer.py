"""A 6-layer, 128-wide nn.TransformerEncoder: one forward and backward (benchmarks/speed.py).

BENCH_TIMES=FILE makes it write the CPU seconds of its own forward+backward there."""
import os
import time

import torch
from torch import nn

torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True)
encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
tokens = torch.randn(2, 16, 128)
start = time.process_time()
loss = encoder(tokens).pow(2).mean()
loss.backward()
seconds = time.process_time() - start
if os.environ.get("BENCH_TIMES"):
    with open(os.environ["BENCH_TIMES"], "w") as handle:
        handle.write(f"{seconds}\n")
print(f"loss {loss.item():.4f}")
