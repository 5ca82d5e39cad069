"""One backward call, then sys.exit(2)."""
import sys

import torch

w = torch.ones(2, requires_grad=True)
(w * 2).sum().backward()
sys.exit(2)
