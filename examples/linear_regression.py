"""Linear regression on a generated data set with nn.Linear, nn.MSELoss and SGD; saves a plot."""
import os
import sys

import matplotlib
matplotlib.use("Agg")  # draw to a file; no window is opened
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from sklearn import datasets

torch.manual_seed(0)  # fixed initial weights for nn.Linear

# 0) Data: 100 noisy points on a line (random_state makes it the same every run).
X_numpy, y_numpy = datasets.make_regression(n_samples=100, n_features=1, noise=20, random_state=1)
X = torch.from_numpy(X_numpy.astype(np.float32))  # float64 -> float32, the dtype of the model weights
y = torch.from_numpy(y_numpy.astype(np.float32))
y = y.view(y.shape[0], 1)  # column vector (100, 1), the same shape as the model output
n_samples, n_features = X.shape

# 1) Model: one input feature, one output.
model = nn.Linear(n_features, 1)

# 2) Loss and optimizer.
learning_rate = 0.01
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

# 3) Training loop: forward, loss, backward, update, zero the gradients.
num_epochs = 100
for epoch in range(num_epochs):
    y_predicted = model(X)
    loss = criterion(y_predicted, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if (epoch + 1) % 10 == 0:
        print("epoch: %3d, loss = %.4f" % (epoch + 1, loss.item()))

# 4) Plot. detach() gives a tensor outside the graph, which .numpy() requires.
predicted = model(X).detach().numpy()
plt.plot(X_numpy, y_numpy, "ro")
plt.plot(X_numpy, predicted, "b")
out_path = sys.argv[1] if len(sys.argv) > 1 else "linear_regression.png"
plt.savefig(out_path)
print("plot saved to", os.path.abspath(out_path))
