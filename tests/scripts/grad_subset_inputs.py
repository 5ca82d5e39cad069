"""torch.autograd.grad with inputs a subset of the leaves: only the
gradient with respect to the data x is asked for, not the layer's weights,
so torch never computes the weights' gradients."""
import torch
from torch import nn

torch.manual_seed(2)
layer = nn.Linear(3, 2).double()
x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
loss = torch.tanh(layer(x)).pow(2).sum()
(dx,) = torch.autograd.grad(loss, [x])

print("dloss/dx:", [[round(v, 10) for v in row] for row in dx.tolist()])
print("weight.grad is None:", layer.weight.grad is None)
