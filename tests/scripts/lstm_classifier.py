"""A sequence classifier as people write them: nn.LSTM (float32, so torch
runs its fused oneDNN layer), the last step's hidden state, a linear head,
cross-entropy, one SGD step."""
import torch
import torch.nn as nn

torch.manual_seed(0)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(input_size=3, hidden_size=5, num_layers=2, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1])


model = Classifier()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(4, 6, 3)
y = torch.tensor([0, 1, 1, 0])
loss = nn.functional.cross_entropy(model(x), y)
optimizer.zero_grad()
loss.backward()
optimizer.step()
print(f"loss {loss.item():.4f}")
