"""A custom Function whose backward is itself differentiable: the gradient
is taken with create_graph=True, and then differentiated again."""
import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


x = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
y = Cube.apply(x).sum()
(dx,) = torch.autograd.grad(y, x, create_graph=True)
dx.sum().backward()
print("d2 =", x.grad.tolist())
