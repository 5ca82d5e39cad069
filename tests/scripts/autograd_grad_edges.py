"""The less common ways to call torch.autograd.grad and backward(inputs=...):
an input given as a GradientEdge, an output that is its own input, an input
named twice, inputs no output depends on, two outputs with their own
grad_outputs, and a second backward through a .grad made with
create_graph=True."""
import torch

x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
w = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
h = x.exp()
y = (h * w).sum()
edge = torch.autograd.graph.get_gradient_edge(h)
print(torch.autograd.grad(y, edge, retain_graph=True))
print(torch.autograd.grad(h, h, torch.ones(2, dtype=torch.float64), retain_graph=True))
print(torch.autograd.grad(y, [w, w], retain_graph=True))
z = torch.tensor([1.0], requires_grad=True)
print(torch.autograd.grad(y, [z], retain_graph=True, allow_unused=True))
y.backward(inputs=[z], retain_graph=True)
print(z.grad)
a, b = h * 2, w * 3
ones, twos = torch.ones(2, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64)
print(torch.autograd.grad([a, b], [x, w], [ones, twos]))
loss = (w ** 3 * x).sum()
(dloss_dw,) = torch.autograd.grad(loss, w, create_graph=True)
penalty = (dloss_dw ** 2).sum()
penalty.backward()
print(w.grad, x.grad)
