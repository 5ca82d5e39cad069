"""A ResNet-18 (basic blocks, [2, 2, 2, 2]), written here so that no torchvision is
needed: one forward and backward on a CIFAR-sized batch (benchmarks/speed.py).

The batch is 8 images of 3×32×32, what a CIFAR-10 model is trained on when
it is trained on a CPU at all. The case sets explaining the call against the
call's own forward+backward; on a toy batch (it was 2×3×64×64) that
forward+backward is a few hundredths of a second and the ratio measures
only the fixed cost per node, not how the explanation scales with the work.

BENCH_TIMES=FILE makes it write the CPU seconds of its own forward+backward there."""
import os
import time

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, inputs = [], 64
        for outputs, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Block(inputs, outputs, stride), Block(outputs, outputs, 1)]
            inputs = outputs
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, classes)

    def forward(self, x):
        y = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def make():
    """The model and its batch, seeded (benchmarks/floor.py builds them too)."""
    torch.manual_seed(0)
    return ResNet18(), (torch.randn(8, 3, 32, 32), torch.tensor([3, 7, 0, 1, 2, 4, 5, 6]))


def loss_of(model, images, labels):
    return nn.functional.cross_entropy(model(images), labels)


if __name__ == "__main__":
    model, batch = make()
    start = time.process_time()
    loss = loss_of(model, *batch)
    loss.backward()
    seconds = time.process_time() - start
    if os.environ.get("BENCH_TIMES"):
        with open(os.environ["BENCH_TIMES"], "w") as handle:
            handle.write(f"{seconds}\n")
    print(f"loss {loss.item():.4f}")
