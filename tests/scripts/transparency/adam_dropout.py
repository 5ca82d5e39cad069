"""Adam through dropout in training mode: every step draws from torch's RNG."""
import torch
from _state import save

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
x, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
for step in range(3):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    optimizer.step()
    print(step, repr(loss.item()), repr(torch.rand(()).item()))
save(model=model, optimizer=optimizer)
