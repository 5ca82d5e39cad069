"""Eight threads, each with its own small graph and backward call; results
printed in thread order."""
import threading

import torch
from _state import save

torch.manual_seed(0)
leaves = [torch.full((3,), float(i + 1), requires_grad=True) for i in range(8)]


def work(leaf):
    for _ in range(2):
        (leaf * leaf * 3).sum().backward()


threads = [threading.Thread(target=work, args=(leaf,)) for leaf in leaves]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
for i, leaf in enumerate(leaves):
    print(i, repr(leaf.grad.tolist()))
save(**{f"leaf{i}": leaf for i, leaf in enumerate(leaves)})
