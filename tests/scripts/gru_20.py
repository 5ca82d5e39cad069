"""nn.GRU over 20 steps, the loss on the last output."""
import torch

torch.manual_seed(0)
gru = torch.nn.GRU(3, 4, batch_first=True)
x = torch.randn(1, 20, 3)
out, h = gru(x)
out[:, -1].sum().backward()
