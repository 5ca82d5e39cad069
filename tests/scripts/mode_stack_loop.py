"""Four backward calls, printing how many torch function modes are active
before each, with a mode of the script's own around the last two."""
import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack


class Counting(TorchFunctionMode):
    ops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        Counting.ops += 1
        return func(*args, **(kwargs or {}))


w = torch.tensor([1.0, 2.0], requires_grad=True)
for step in range(4):
    if step == 2:
        mode = Counting()
        mode.__enter__()
    print("step", step, "modes", len(_get_current_function_mode_stack()))
    (w * w).sum().backward()
mode.__exit__(None, None, None)
print("own mode saw ops:", Counting.ops > 0, "grad", w.grad.tolist())
