"""Linear regression f = w * x trained by gradient descent: first by hand in numpy, then with autograd."""
import numpy as np
import torch

learning_rate = 0.01
n_iters = 20

# ---- Part 1: numpy, gradient computed by hand ----
X = np.array([1, 2, 3, 4], dtype=np.float32)
Y = np.array([2, 4, 6, 8], dtype=np.float32)  # Y = 2 * X, so w should move towards 2
N = len(X)
w = 0.0
print("numpy:    f(5) before training = %.3f" % (w * 5))

for epoch in range(n_iters):
    y_pred = w * X                      # forward pass
    l = np.mean((y_pred - Y) ** 2)      # loss J = mean squared error
    # dJ/dw = mean(2 * x * (y_pred - y)). np.dot already sums over the N samples, so divide by N.
    # (The notes wrote np.dot(2*x, y_pred - y).mean(): .mean() of a scalar divides nothing,
    #  which makes that gradient N times too large.)
    dw = np.dot(2 * X, y_pred - Y) / N
    if epoch == 0:
        dw_first = dw                   # kept to compare with autograd below
    w -= learning_rate * dw             # update step
    if epoch % 5 == 0 or epoch == n_iters - 1:
        print("numpy:    epoch %2d: w = %.3f, loss = %.8f" % (epoch + 1, w, l))
print("numpy:    f(5) after training  = %.3f" % (w * 5))

# ---- Part 2: the same loop, with autograd computing the gradient ----
X = torch.tensor([1, 2, 3, 4], dtype=torch.float32)
Y = torch.tensor([2, 4, 6, 8], dtype=torch.float32)
w = torch.tensor(0.0, dtype=torch.float32, requires_grad=True)

for epoch in range(n_iters):
    y_pred = w * X                      # forward pass (recorded by autograd)
    l = ((y_pred - Y) ** 2).mean()      # loss
    l.backward()                        # dl/dw is now in w.grad
    if epoch == 0:
        print("first step: hand gradient = %.4f, autograd w.grad = %.4f" % (dw_first, w.grad.item()))
        assert abs(dw_first - w.grad.item()) < 1e-4, "hand gradient and autograd disagree"
    with torch.no_grad():               # the update itself must not be part of the graph
        w -= learning_rate * w.grad
    w.grad.zero_()                      # gradients accumulate, so clear them every step
    if epoch % 5 == 0 or epoch == n_iters - 1:
        print("autograd: epoch %2d: w = %.3f, loss = %.8f" % (epoch + 1, w.item(), l.item()))
print("autograd: f(5) after training  = %.3f" % (w.item() * 5))
