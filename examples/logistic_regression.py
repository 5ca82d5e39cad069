"""Logistic regression (binary classification) on the breast cancer data set with nn.BCELoss."""
import numpy as np
import torch
import torch.nn as nn
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

torch.manual_seed(0)  # fixed initial weights for nn.Linear

# 0) Data: 569 samples, 30 features, label 0 (malignant) or 1 (benign). Ships with sklearn.
bc = datasets.load_breast_cancer()
X, y = bc.data, bc.target
n_samples, n_features = X.shape
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)

# Scale features to mean 0, std 1; fit on the training set only, then apply to both.
sc = StandardScaler()
X_train = sc.fit_transform(X_train)
X_test = sc.transform(X_test)

X_train = torch.from_numpy(X_train.astype(np.float32))
X_test = torch.from_numpy(X_test.astype(np.float32))
y_train = torch.from_numpy(y_train.astype(np.float32))
y_test = torch.from_numpy(y_test.astype(np.float32))
y_train = y_train.view(y_train.shape[0], 1)  # column vectors, the same shape as the model output
y_test = y_test.view(y_test.shape[0], 1)

# 1) Model: f = sigmoid(w x + b), a probability between 0 and 1.
class Model(nn.Module):
    def __init__(self, n_input_features):
        super().__init__()
        self.linear = nn.Linear(n_input_features, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))

model = Model(n_features)

# 2) Loss and optimizer: binary cross-entropy, takes (prediction, target) in that order.
learning_rate = 0.01
criterion = nn.BCELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

# 3) Training loop.
num_epochs = 100
for epoch in range(num_epochs):
    y_predicted = model(X_train)
    loss = criterion(y_predicted, y_train)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if (epoch + 1) % 10 == 0:
        print("epoch: %3d, loss = %.4f" % (epoch + 1, loss.item()))

# 4) Evaluation: no gradients needed, so skip building a graph.
with torch.no_grad():
    y_predicted = model(X_test)
    y_predicted_cls = y_predicted.round()  # probability -> class 0 or 1
    acc = y_predicted_cls.eq(y_test).sum() / float(y_test.shape[0])
    print("accuracy = %.4f" % acc.item())
