"""A torch.compile'd function and a torch.compile'd module in a training
step: they must compile as under plain python (same graph breaks, same
graphs, same numbers, no new warning)."""
import torch
from torch._dynamo.utils import counters
from _state import save


@torch.compile
def loss_of(x, w):
    return torch.sin(x * w).sum()


torch.manual_seed(0)
x = torch.randn(5, requires_grad=True)
w = torch.randn(5, requires_grad=True)
model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
compiled = torch.compile(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(2):
    optimizer.zero_grad()
    loss = loss_of(x, w) + compiled(x.unsqueeze(0)).sum()
    loss.backward()
    optimizer.step()
    print(step, repr(loss.item()), type(loss.grad_fn).__name__)
print("graph breaks", sum(counters["graph_break"].values()), "graphs", counters["stats"]["unique_graphs"])
save(x=x, w=w, model=model, optimizer=optimizer)
