"""An elementwise chain of N nodes (N from argv, default 1000), one backward call
(benchmarks/speed.py): how the cost of explaining grows with the graph."""
import sys

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
torch.manual_seed(0)
x = torch.randn(8, requires_grad=True)
y = x
for step in range(n):
    y = y.log() if step % 2 else y.exp()  # log(exp(y)) = y: the values and gradients stay near 1
y.sum().backward()
print(f"grad norm {x.grad.norm().item():.4f}")
