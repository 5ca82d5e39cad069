"""SGD with momentum through batch norm in training mode (running
statistics change every step), then one evaluation."""
import torch
from _state import save

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(6, 3), torch.randn(6, 1)
for step in range(3):
    optimizer.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(step, repr(loss.item()))
model.eval()
print("eval", repr(model(x).sum().item()))
save(model=model, optimizer=optimizer)
