"""Per-sample gradients with torch.func (vmap of grad, functional_call, jacrev),
then one ordinary backward call."""
import torch
from torch.func import functional_call, grad, jacrev, vmap
from _state import save

torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
params = {name: p.detach() for name, p in model.named_parameters()}
x, y = torch.randn(4, 3), torch.randn(4, 1)


def sample_loss(params, xi, yi):
    return ((functional_call(model, params, (xi,)) - yi) ** 2).sum()


per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
for name, value in per_sample.items():
    print(name, repr(value.tolist()))
print("jacobian", repr(jacrev(torch.sin)(x[0]).tolist()))
loss = ((model(x) - y) ** 2).mean()
loss.backward()
print("loss", repr(loss.item()))
save(model=model, **{f"per_sample_{k}": v for k, v in per_sample.items()})
