"""loss = (a @ b).relu().mean() with N×N matrices (N from argv, default 2000): the case
of issue 10 (benchmarks/speed.py)."""
import sys

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
torch.manual_seed(0)
a = torch.randn(n, n, requires_grad=True)
b = torch.randn(n, n, requires_grad=True)
loss = (a @ b).relu().mean()
loss.backward()
print(f"loss {loss.item():.4f}")
