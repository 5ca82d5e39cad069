"""A small float32 CNN, as the 60-minute blitz builds one: nn.Conv2d, relu,
max_pool, another conv, a linear layer, cross-entropy, then backward()."""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


torch.manual_seed(0)
net = Net()
images = torch.randn(2, 1, 8, 8)
labels = torch.tensor([1, 3])
loss = F.cross_entropy(net(images), labels)
loss.backward()
print("loss:", round(loss.item(), 4))
print("conv1 weight grad norm:", round(net.conv1.weight.grad.norm().item(), 4))
