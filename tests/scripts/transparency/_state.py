"""Saves what a transparency script computed, for tests/test_transparency.py
to compare bit for bit between a plain and a traced run: every parameter,
gradient and buffer, every optimizer tensor, and torch's RNG state."""

import sys

import torch


def save(**things) -> None:
    """save(model=model, optimizer=optimizer, x=tensor): to sys.argv[1]."""
    state = {"rng": torch.get_rng_state()}
    for name, thing in things.items():
        if isinstance(thing, torch.nn.Module):
            for key, value in thing.state_dict(keep_vars=True).items():
                state[f"{name}.{key}"] = value.detach()
                if value.grad is not None:
                    state[f"{name}.{key}.grad"] = value.grad
        elif isinstance(thing, torch.optim.Optimizer):
            for index, slots in thing.state_dict()["state"].items():
                for key, value in slots.items():
                    if isinstance(value, torch.Tensor):
                        state[f"{name}.{index}.{key}"] = value
        elif isinstance(thing, torch.Tensor):
            state[name] = thing.detach()
            if thing.grad is not None:
                state[f"{name}.grad"] = thing.grad
        else:
            raise TypeError(f"{name}: cannot save a {type(thing).__name__}")
    torch.save(state, sys.argv[1])
