"""A GRU whose gradients come from torch.autograd.grad, applied by hand."""
import torch
from _state import save

torch.manual_seed(0)
gru = torch.nn.GRU(input_size=3, hidden_size=4, batch_first=True)
head = torch.nn.Linear(4, 1)
params = [*gru.parameters(), *head.parameters()]
x, y = torch.randn(2, 5, 3), torch.randn(2, 1)
for step in range(2):
    output, hidden = gru(x)
    loss = ((head(output[:, -1]) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for param, grad in zip(params, grads):
            param -= 0.1 * grad
    print(step, repr(loss.item()), repr(sum(float(g.norm()) for g in grads)))
save(gru=gru, head=head)
