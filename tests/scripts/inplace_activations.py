"""A small net whose activations work in place: torch records their own
nodes (LeakyReluBackward1, CeluBackward1), which keep the result, not the
input they overwrote."""
import torch
import torch.nn as nn

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2, inplace=True), nn.Linear(4, 2), nn.CELU(0.5, inplace=True))
x = torch.randn(5, 3)
y = torch.randn(5, 2)
loss = ((net(x) - y) ** 2).mean()
loss.backward()
print(net[0].weight.grad.tolist())
