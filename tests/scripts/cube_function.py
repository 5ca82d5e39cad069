import torch
class Cube(torch.autograd.Function):
    forward = staticmethod(lambda ctx, x: (ctx.save_for_backward(x), x ** 3)[1])
    backward = staticmethod(lambda ctx, g: g * 3 * ctx.saved_tensors[0] ** 2)
x = torch.tensor([1.0, -2.0, 0.5], requires_grad=True); Cube.apply(x).sum().backward(); print(x.grad)
