"""A small training loop for benchmarks/overhead.py and benchmarks/speed.py: a two-layer MLP, 300 steps."""
import torch
from torch import nn

torch.manual_seed(0)
X = torch.randn(256, 16)
y = (X[:, :1] > 0).float()
model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1), nn.Sigmoid())
criterion = nn.BCELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(300):
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
print(f"final loss {loss.item():.4f}")
