# Source: PyTorch docs, "Autograd mechanics" notes (docs/source/notes/autograd.rst): saved
# tensors (_saved_self / _saved_result), locally disabling gradient computation
# (requires_grad_ freezing, no_grad, inference_mode, set_grad_enabled), in-place correctness
# checks; plus the Exp Function of
# "Extending torch.autograd" (notes/extending.rst) with its gradcheck.
# Change: torch.randn inputs come from NumPy with a fixed seed (tests/programs/_data.py).
import torch
from torch.autograd import Function, gradcheck
from _data import randn

x = randn(5, requires_grad=True)
y = x.pow(2)
print(x.equal(y.grad_fn._saved_self))  # True
print(x is y.grad_fn._saved_self)  # True

x = randn(5, requires_grad=True)
y = x.exp()
print(y.equal(y.grad_fn._saved_result))  # True
print(y is y.grad_fn._saved_result)  # False

# Setting requires_grad
model = torch.nn.Linear(4, 2)
model.requires_grad_(False)
print([p.requires_grad for p in model.parameters()])
model.requires_grad_(True)

x = torch.zeros(1, requires_grad=True)
with torch.no_grad():
    y = x * 2
print(y.requires_grad)

is_train = False
with torch.set_grad_enabled(is_train):
    y = x * 2
print(y.requires_grad)

torch.set_grad_enabled(True)  # this can also be used as a function
y = x * 2
print(y.requires_grad)

torch.set_grad_enabled(False)
y = x * 2
print(y.requires_grad)
torch.set_grad_enabled(True)

with torch.inference_mode():
    y = x * 2
print(y.requires_grad, y.is_inference())

# In-place correctness checks
a = randn(3, requires_grad=True)
b = a.sigmoid()
b.mul_(2)
try:
    b.sum().backward()
except RuntimeError as e:
    print("RuntimeError:", str(e).split(";")[0])


class Exp(Function):
    @staticmethod
    def forward(ctx, i):
        result = i.exp()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        result, = ctx.saved_tensors
        return grad_output * result


# Use it by calling the apply method:
input = randn(4, dtype=torch.double, requires_grad=True)
output = Exp.apply(input)
output.sum().backward()
print(output, input.grad)
print(gradcheck(Exp.apply, (input,)))
