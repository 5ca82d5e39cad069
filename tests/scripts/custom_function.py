"""A custom autograd.Function: graphexplain has no symbolic rule for it."""
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


x = torch.tensor([1.0, 2.0], requires_grad=True)
cubed = Cube.apply(x)
loss = (cubed * 2).sum()
loss.backward()
print("x.grad =", x.grad.tolist())
