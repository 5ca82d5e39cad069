"""A custom Function in the torch >= 2.0 style: forward without ctx, then setup_context."""
import torch


class ScaledSquare(torch.autograd.Function):
    @staticmethod
    def forward(x, scale):
        return scale * x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, scale = inputs
        ctx.save_for_backward(x)
        ctx.scale = scale

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * ctx.scale * x, None


x = torch.tensor([0.5, -1.5, 2.0], requires_grad=True)
loss = ScaledSquare.apply(x, 3.0).sum()
loss.backward()
print("x.grad =", x.grad.tolist())
