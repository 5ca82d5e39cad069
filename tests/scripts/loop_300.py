"""A training loop of 300 steps: 300 backward calls, for the summarised
table of calls (tests/test_names.py)."""
import torch

torch.manual_seed(0)
x = torch.linspace(-1, 1, 20)
y = 3 * x ** 2 - x + 0.5
a = torch.zeros(1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for step in range(300):
    loss = ((a * x ** 2 + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        a -= 0.1 * a.grad
        b -= 0.1 * b.grad
        a.grad.zero_()
        b.grad.zero_()
print(f"a={a.item():.3f} b={b.item():.3f}")
