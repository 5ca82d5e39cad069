"""Autograd basics: build a small graph from x, reduce it to a scalar, call backward()."""
import torch

torch.manual_seed(0)  # fixed seed so x (and the printed gradient) is the same every run

# requires_grad=True tells autograd to record every operation done with x.
x = torch.rand(3, requires_grad=True)
print("x =", x)

# Each operation adds a node to the graph; y gets grad_fn=<AddBackward0>.
y = x + 2
print("y =", y)

z = y * y * 2  # grad_fn=<MulBackward0>
z = z.mean()   # a scalar, so backward() needs no extra argument
print("z =", z)

# backward() applies the chain rule from z back to x and stores dz/dx in x.grad.
# z = mean(2 * (x + 2)**2) over 3 elements, so dz/dx = 4 * (x + 2) / 3.
z.backward()
print("x.grad =", x.grad)
print("4(x+2)/3 =", (4 * (x + 2) / 3).detach())
