"""The PyTorch training pipeline: model, loss, optimizer, then forward / backward / step / zero_grad."""
import torch
import torch.nn as nn

torch.manual_seed(0)  # nn.Linear starts from random weights; the seed makes the run repeatable

# 1) Data: nn.Linear wants 2D inputs of shape (n_samples, n_features).
X = torch.tensor([[1], [2], [3], [4]], dtype=torch.float32)
Y = torch.tensor([[2], [4], [6], [8]], dtype=torch.float32)  # Y = 2 * X
X_test = torch.tensor([5.], dtype=torch.float32)
n_samples, n_features = X.shape
print("n_samples = %d, n_features = %d" % (n_samples, n_features))

# 2) Model: a built-in layer would do ...
model = nn.Linear(n_features, n_features)

# ... but the usual way is a custom nn.Module that wraps layers and defines forward().
class LinearRegression(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.lin = nn.Linear(input_dim, output_dim)  # registered, so model.parameters() finds it

    def forward(self, x):
        return self.lin(x)

model = LinearRegression(n_features, n_features)
print("prediction before training: f(5) = %.3f" % model(X_test).item())

# 3) Loss and optimizer: the optimizer updates whatever model.parameters() returns.
learning_rate = 0.01
n_iters = 100
loss = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

# 4) Training loop.
for epoch in range(n_iters):
    y_predicted = model(X)        # forward pass
    # Loss functions take (prediction, target) in that order. The notes wrote loss(Y, y_predicted);
    # MSE happens to be symmetric, but e.g. BCELoss is not, so keep the order right.
    l = loss(y_predicted, Y)
    l.backward()                  # gradients of l w.r.t. the weight and bias
    optimizer.step()              # w -= lr * w.grad (for every parameter)
    optimizer.zero_grad()         # clear .grad, otherwise the next backward() adds to it
    if epoch % 20 == 0 or epoch == n_iters - 1:
        [w, b] = model.parameters()
        print("epoch %3d: w = %.3f, loss = %.6f" % (epoch + 1, w[0][0].item(), l.item()))

print("prediction after training:  f(5) = %.3f" % model(X_test).item())
