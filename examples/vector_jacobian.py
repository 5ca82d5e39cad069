"""backward() on a non-scalar output needs a vector v: autograd computes a vector-Jacobian product."""
import torch

torch.manual_seed(0)  # fixed seed so x is the same every run

x = torch.rand(3, requires_grad=True)
y = x + 2
z = y * y * 2  # 3 elements: z is NOT a scalar
print("x =", x)
print("z =", z)

# Because z is not a scalar, z.backward() with no argument would raise
#   RuntimeError: grad can be implicitly created only for scalar outputs
# so we pass a vector v of the same shape as z.
v = torch.tensor([0.1, 1.0, 0.001], dtype=torch.float32)

# Autograd computes x.grad = v^T . J, where J = dz/dx is the Jacobian.
# Here z_i = 2 * y_i**2 only depends on x_i, so J = diag(4y) and x.grad = v * 4y.
z.backward(v)
print("x.grad =", x.grad)
print("v * 4y =", (v * 4 * y).detach())
