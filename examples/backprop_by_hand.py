"""Backpropagation for one weight: the forward pass, the local gradients, and the backward pass."""
import torch

x = torch.tensor(1.0)                      # input
y = torch.tensor(2.0)                      # target
w = torch.tensor(1.0, requires_grad=True)  # the weight we want dloss/dw for

# Step 1: forward pass and loss.
# y_hat = w * x = 1, s = y_hat - y = -1, loss = s**2 = 1
y_hat = w * x
loss = (y_hat - y) ** 2
print("loss =", loss)

# Step 2: local gradients, one per node of the graph:
#   dloss/ds    = 2s   = -2
#   ds/dy_hat   = 1
#   dy_hat/dw   = x    = 1

# Step 3: backward pass, the chain rule multiplies the local gradients:
#   dloss/dw = dloss/ds * ds/dy_hat * dy_hat/dw = 2s * 1 * x = -2
loss.backward()
print("w.grad =", w.grad)  # tensor(-2.)
