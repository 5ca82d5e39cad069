"""A straight-through estimator: round in the forward, the identity in the
backward, on purpose."""
import torch

import graphexplain


@graphexplain.intentional_gradient("straight-through estimator: rounding passes the gradient on unchanged")
class RoundThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


x = torch.tensor([0.4, 1.6, -2.2], requires_grad=True)
loss = (RoundThrough.apply(x * 3) ** 2).sum()
loss.backward()
print("x.grad =", x.grad.tolist())
