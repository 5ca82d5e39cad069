"""Fit y = sin(x) on [-pi, pi] by y = a + b * P3(c + d * x), where P3 is the
Legendre polynomial of degree 3, written as a custom autograd.Function with
a hand-written backward, and the four numbers are updated by plain gradient
descent under torch.no_grad()."""
import math

import torch


class Legendre3(torch.autograd.Function):
    """P3(t) = (5 t^3 - 3 t) / 2, and its derivative by hand."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return 0.5 * (5 * t ** 3 - 3 * t)

    @staticmethod
    def backward(ctx, grad_output):
        (t,) = ctx.saved_tensors
        return grad_output * 1.5 * (5 * t ** 2 - 1)


torch.manual_seed(0)
x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)

a = torch.full((), 0.0, requires_grad=True)
b = torch.full((), -1.0, requires_grad=True)
c = torch.full((), 0.0, requires_grad=True)
d = torch.full((), 0.3, requires_grad=True)

step_size = 5e-6
for step in range(2000):
    p3 = Legendre3.apply(c + d * x)
    y_pred = a + b * p3
    loss = (y_pred - y).pow(2).sum()
    if step % 500 == 499:
        print(f"step {step + 1}: loss {loss.item():.4f}")
    loss.backward()
    with torch.no_grad():
        for weight in (a, b, c, d):
            weight -= step_size * weight.grad
            weight.grad = None

print(f"y = {a.item():.4f} + {b.item():.4f} * P3({c.item():.4f} + {d.item():.4f} x)")
