"""A custom Function whose forward draws random numbers (a dropout mask):
run again it would draw another mask, so graphexplain must not check it,
and must leave the script's random numbers as they were."""
import torch


class Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        mask = (torch.rand(x.shape) > 0.5).to(x.dtype) * 2
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask


torch.manual_seed(7)
x = torch.linspace(-1, 1, 6, requires_grad=True)
loss = (Dropout.apply(x) ** 2).sum()
loss.backward()
print("x.grad =", [round(v, 6) for v in x.grad.tolist()])
print("next random numbers:", [round(v, 6) for v in torch.rand(3).tolist()])
