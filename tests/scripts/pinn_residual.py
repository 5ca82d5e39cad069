"""A physics-informed residual: u(x, t) is a small MLP, and the viscous
Burgers residual u_t + u*u_x - nu*u_xx is built from derivatives taken with
torch.autograd.grad(create_graph=True), then trained on with backward()."""
import torch
from torch import nn

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1)).double()
x = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).reshape(4, 1).requires_grad_(True)
t = torch.linspace(0.0, 0.5, 4, dtype=torch.float64).reshape(4, 1).requires_grad_(True)
nu = 0.01 / torch.pi

u = net(torch.cat([x, t], dim=1))
ones = torch.ones_like(u)
u_x, u_t = torch.autograd.grad(u, [x, t], grad_outputs=ones, create_graph=True)
u_xx = torch.autograd.grad(u_x, x, grad_outputs=torch.ones_like(u_x), create_graph=True)[0]
residual = u_t + u * u_x - nu * u_xx
loss = residual.pow(2).mean()
loss.backward()

print("residual loss:", round(loss.item(), 8))
print("grad norm of the first layer:", round(net[0].weight.grad.norm().item(), 8))
print("x.grad is None:", x.grad is None)
