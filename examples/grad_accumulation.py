"""backward() ADDS into .grad, so gradients must be zeroed before the next step."""
import torch

weights = torch.ones(4, requires_grad=True)

# Without zeroing: each backward() adds 3 to weights.grad, giving 3, 6, 9.
print("without zeroing:")
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    print(weights.grad)

weights.grad.zero_()  # start the second loop from a clean gradient

# With zeroing after each step: weights.grad is always 3 (d(3w)/dw).
print("with weights.grad.zero_():")
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    print(weights.grad)
    weights.grad.zero_()
