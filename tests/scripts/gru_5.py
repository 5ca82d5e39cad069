"""nn.GRU over 5 steps, the loss on the last output: every node is inside
the module, so none has a name of the script's own."""
import torch

torch.manual_seed(0)
gru = torch.nn.GRU(3, 4, batch_first=True)
x = torch.randn(1, 5, 3)
out, h = gru(x)
out[:, -1].sum().backward()
