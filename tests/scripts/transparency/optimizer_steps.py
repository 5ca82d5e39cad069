"""SGD with momentum, AdamW, RMSprop (centered) and a manual update under
no_grad, each step watched by graphexplain: the parameters and the
optimizers' state must come out bit for bit as under plain python."""
import torch
from _state import save

torch.manual_seed(0)
model = torch.nn.Linear(3, 2)
w = torch.randn(2, requires_grad=True)
sgd = torch.optim.SGD([model.weight], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
adamw = torch.optim.AdamW([model.bias], lr=0.01, amsgrad=True)
rms = torch.optim.RMSprop([w], lr=0.01, centered=True, momentum=0.5)
x = torch.randn(4, 3)
for step in range(3):
    loss = (model(x) ** 2).sum() + (w ** 3).sum()
    loss.backward()
    sgd.step()
    adamw.step()
    rms.step()
    with torch.no_grad():
        model.weight -= 0.01 * model.weight.grad
    model.zero_grad(set_to_none=False)
    w.grad = None
    print(step, repr(loss.item()))
save(model=model, sgd=sgd, adamw=adamw, rms=rms, w=w)
