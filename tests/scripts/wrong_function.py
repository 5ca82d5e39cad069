"""A matrix product as a custom Function whose backward is wrong in the way
argv[1] says: scaled, flipped, transposed or element (or right)."""
import sys

import torch

MISTAKE = sys.argv[1] if len(sys.argv) > 1 else "right"


class Product(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a, grad_b = grad @ b.T, a.T @ grad
        if MISTAKE == "scaled":
            grad_a = grad_a * 2 / 3
        elif MISTAKE == "flipped":
            grad_a = -grad_a
        elif MISTAKE == "transposed":
            grad_a = grad_a.T
        elif MISTAKE == "element":
            grad_a = grad_a.clone()
            grad_a[1, 2] += 0.5
        return grad_a, grad_b


torch.manual_seed(3)
a = torch.randn(3, 3, requires_grad=True)
b = torch.randn(3, 2, requires_grad=True)
loss = (Product.apply(a, b) * torch.tensor([1.0, -2.0])).sum()
loss.backward()
print("done")
