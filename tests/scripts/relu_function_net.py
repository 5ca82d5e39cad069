"""A two-layer network whose ReLU is a custom autograd.Function, trained a
few steps by hand."""
import torch


class ClampedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs):
        ctx.save_for_backward(inputs)
        return inputs.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (inputs,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[inputs < 0] = 0
        return grad_input


torch.manual_seed(1)
batch, d_in, hidden, d_out = 8, 5, 6, 3
x = torch.randn(batch, d_in)
y = torch.randn(batch, d_out)
w1 = torch.randn(d_in, hidden, requires_grad=True)
w2 = torch.randn(hidden, d_out, requires_grad=True)
for step in range(3):
    y_pred = ClampedReLU.apply(x.mm(w1)).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    print(f"step {step}: loss {loss.item():.4f}")
    loss.backward()
    with torch.no_grad():
        w1 -= 1e-3 * w1.grad
        w2 -= 1e-3 * w2.grad
        w1.grad.zero_()
        w2.grad.zero_()
