"""Linear regression f = w * x + b trained with Adam instead of SGD: the same loop, another update rule."""
import torch
import torch.nn as nn

torch.manual_seed(0)  # nn.Linear starts from random weights; the seed makes the run repeatable

X = torch.tensor([[1], [2], [3], [4]], dtype=torch.float32)
Y = torch.tensor([[2], [4], [6], [8]], dtype=torch.float32)  # Y = 2 * X

model = nn.Linear(1, 1)
loss = nn.MSELoss()
# Adam keeps two running averages per parameter: m (of the gradient) and v (of its square),
# and divides by sqrt(v), so every parameter moves by about lr per step whatever its gradient's size.
optimizer = torch.optim.Adam(model.parameters(), lr=0.1)

for epoch in range(200):
    l = loss(model(X), Y)
    l.backward()
    optimizer.step()        # m, v, their bias corrections, then w -= lr * m_hat / (sqrt(v_hat) + eps)
    optimizer.zero_grad()
    if epoch % 50 == 0 or epoch == 199:
        print("epoch %3d: w = %.3f, b = %.3f, loss = %.6f" % (epoch + 1, model.weight.item(), model.bias.item(), l.item()))

print("prediction after training: f(5) = %.3f" % model(torch.tensor([5.0])).item())
