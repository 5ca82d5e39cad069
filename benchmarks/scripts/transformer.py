"""A 6-layer, 128-wide nn.TransformerEncoder: one forward and backward (benchmarks/speed.py).

The batch is 8 sequences of 64 tokens, a size such an encoder is trained
at on a CPU. The case sets explaining the call against the call's own
forward+backward; on a toy batch (it was 2×16 tokens) that forward+backward
takes a few hundredths of a second and the ratio measures only the fixed
cost per node, not how the explanation scales with the work.

BENCH_TIMES=FILE makes it write the CPU seconds of its own forward+backward there."""
import os
import time

import torch
from torch import nn

def make():
    """The model and its batch, seeded (benchmarks/floor.py builds them too)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False), (torch.randn(8, 64, 128),)


def loss_of(encoder, tokens):
    return encoder(tokens).pow(2).mean()


if __name__ == "__main__":
    encoder, batch = make()
    start = time.process_time()
    loss = loss_of(encoder, *batch)
    loss.backward()
    seconds = time.process_time() - start
    if os.environ.get("BENCH_TIMES"):
        with open(os.environ["BENCH_TIMES"], "w") as handle:
            handle.write(f"{seconds}\n")
    print(f"loss {loss.item():.4f}")
