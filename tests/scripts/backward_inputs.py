"""Tensor.backward(inputs=[...]): only the named tensors accumulate a
gradient, even though others lie behind the loss too."""
import torch

w1 = torch.tensor([[1.0, -2.0], [0.5, 1.5]], dtype=torch.float64, requires_grad=True)
w2 = torch.tensor([[0.3, 0.1], [-0.4, 0.2]], dtype=torch.float64, requires_grad=True)
b = torch.tensor([0.1, -0.1], dtype=torch.float64, requires_grad=True)
x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)

hidden = torch.relu(x @ w1 + b)
loss = (hidden @ w2).pow(2).sum()
loss.backward(inputs=[w1], retain_graph=True)
print("w1.grad:", w1.grad.tolist())
print("w2.grad is None:", w2.grad is None, "b.grad is None:", b.grad is None)
torch.autograd.backward(loss, inputs=[b, hidden])
print("b.grad:", b.grad.tolist())
print("hidden.grad:", hidden.grad.tolist())
