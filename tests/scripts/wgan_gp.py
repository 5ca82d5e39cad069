"""WGAN-GP: the critic's gradient with respect to points interpolated
between real and generated samples is pushed towards norm 1. The gradient
is taken with torch.autograd.grad(create_graph=True), so the penalty's own
backward runs through the critic's backward (double backward)."""
import torch
from torch import nn

torch.manual_seed(1)
generator = nn.Sequential(nn.Linear(2, 4)).double()
critic = nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2), nn.Linear(5, 1)).double()

real = torch.randn(3, 4, dtype=torch.float64)
noise = torch.randn(3, 2, dtype=torch.float64)
fake = generator(noise).detach()
alpha = torch.rand(3, 1, dtype=torch.float64)
interpolated = (alpha * real + (1 - alpha) * fake).requires_grad_(True)

score = critic(interpolated)
(gradients,) = torch.autograd.grad(outputs=score, inputs=interpolated, grad_outputs=torch.ones_like(score),
                                   create_graph=True, retain_graph=True)
penalty = ((gradients.norm(2, dim=1) - 1) ** 2).mean()
critic_loss = critic(fake).mean() - critic(real).mean() + 10 * penalty
critic_loss.backward()

print("penalty:", round(penalty.item(), 8))
print("critic loss:", round(critic_loss.item(), 8))
print("interpolated.grad is None:", interpolated.grad is None)
