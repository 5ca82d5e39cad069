"""Three ways to stop autograd tracking: requires_grad_(False), detach(), torch.no_grad()."""
import torch

torch.manual_seed(0)  # fixed seed so x is the same every run

# (a) requires_grad_(False) switches tracking off in place (trailing _ = in-place).
a = torch.ones(2, requires_grad=True)
a.requires_grad_(False)
b = a * 2
print("(a) a.requires_grad =", a.requires_grad, "| b.requires_grad =", b.requires_grad)
a.requires_grad_(True)  # switch it back on: now a * 2 is tracked again
# b was made while tracking was off, so it is a constant here: d(out_a)/da is 2, not 4.
out_a = (a * 2 + b).sum()
out_a.backward()
print("(a) a.requires_grad =", a.requires_grad, "| a.grad =", a.grad)

# (b) detach() returns a tensor with the same values, cut off from the graph.
x = torch.rand(3, requires_grad=True)
c = x.detach()
print("(b) x.requires_grad =", x.requires_grad, "| c.requires_grad =", c.requires_grad)
# c is a constant, so d/dx of sum(x * c) is c (not 2x, which it would be without detach).
out = (x * c).sum()
out.backward()
print("(b) x.grad =", x.grad, "| c =", c)

# (c) Inside torch.no_grad() nothing is recorded: d is a constant.
with torch.no_grad():
    d = x * 2
print("(c) d.requires_grad =", d.requires_grad)
out2 = (x * 3 + d).sum()
x.grad.zero_()  # clear the gradient left over from (b), otherwise it would accumulate
out2.backward()
print("(c) x.grad =", x.grad)  # all 3s: d contributes nothing
