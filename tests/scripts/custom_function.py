"""A custom autograd.Function whose forward leaves torch (numpy): graphexplain
cannot differentiate that forward, so the node has no symbolic rule."""
import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.from_numpy(x.numpy() ** 3)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


x = torch.tensor([1.0, 2.0], requires_grad=True)
cubed = Cube.apply(x)
loss = (cubed * 2).sum()
loss.backward()
print("x.grad =", x.grad.tolist())
