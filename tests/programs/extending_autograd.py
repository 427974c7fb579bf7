# Source: PyTorch docs, "Extending PyTorch" notes (docs/source/notes/extending.rst), sections
# "Extending torch.autograd" (LinearFunction, MulConstant, gradcheck) and "Extending torch.nn"
# (the Linear Module built on LinearFunction).
# LinearFunction.forward takes bias=None, as the notes' earlier text does (the gradcheck call
# below passes no bias; PyTorch too refuses it without the default).
# Changes: the inputs and the module's weights come from NumPy with a fixed seed
# (tests/programs/_data.py) in place of torch.randn / nn.init.uniform_, and the end prints what
# the functions compute (outputs, gradients, gradcheck results) so the two runs can be compared.
import torch
from torch import nn
from torch.autograd import Function
from _data import randn, rand


# Inherit from Function
class LinearFunction(Function):

    # Note that forward, setup_context, and backward are @staticmethods
    @staticmethod
    def forward(input, weight, bias=None):
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    # inputs is a Tuple of all of the inputs passed to forward.
    # output is the output of the forward().
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs
        ctx.save_for_backward(input, weight, bias)

    # This function has only a single output, so it gets only one gradient
    @staticmethod
    def backward(ctx, grad_output):
        # This is a pattern that is very convenient - at the top of backward
        # unpack saved_tensors and initialize all gradients w.r.t. inputs to
        # None. Thanks to the fact that additional trailing Nones are
        # ignored, the return statement is simple even when the function has
        # optional inputs.
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None

        # These needs_input_grad checks are optional and there only to
        # improve efficiency. If you want to make your code simpler, you can
        # skip them. Returning gradients for inputs that don't require it is
        # not an error.
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)

        return grad_input, grad_weight, grad_bias


# Option 1: alias
linear = LinearFunction.apply


class MulConstant(Function):
    @staticmethod
    def forward(tensor, constant):
        return tensor * constant

    @staticmethod
    def setup_context(ctx, inputs, output):
        # ctx is a context object that can be used to stash information
        # for backward computation
        tensor, constant = inputs
        ctx.constant = constant

    @staticmethod
    def backward(ctx, grad_output):
        # We return as many input gradients as there were arguments.
        # Gradients of non-Tensor arguments to forward must be None.
        return grad_output * ctx.constant, None


from torch.autograd import gradcheck

# gradcheck takes a tuple of tensors as input, check if your gradient
# evaluated with these tensors are close enough to numerical
# approximations and returns True if they all verify this condition.
input = (randn(20,20,dtype=torch.double,requires_grad=True), randn(30,20,dtype=torch.double,requires_grad=True))
test = gradcheck(linear, input, eps=1e-6, atol=1e-4)
print(test)


class Linear(nn.Module):
    def __init__(self, input_features, output_features, bias=True):
        super().__init__()
        self.input_features = input_features
        self.output_features = output_features

        # nn.Parameter is a special kind of Tensor, that will get
        # automatically registered as Module's parameter once it's assigned
        # as an attribute. Parameters and buffers need to be registered, or
        # they won't appear in .parameters() (doesn't apply to buffers), and
        # won't be converted when e.g. .cuda() is called. You can use
        # .register_buffer() to register buffers.
        # nn.Parameters require gradients by default.
        self.weight = nn.Parameter(torch.empty(output_features, input_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(output_features))
        else:
            # You should always register all possible parameters, but the
            # optional ones can be None if you want.
            self.register_parameter('bias', None)

        # Not a very smart way to initialize weights
        nn.init.uniform_(self.weight, -0.1, 0.1)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -0.1, 0.1)

    def forward(self, input):
        # See the autograd section for explanation of what happens here.
        return LinearFunction.apply(input, self.weight, self.bias)

    def extra_repr(self):
        # (Optional)Set the extra information about this module. You can test
        # it by printing an object of this class.
        return 'input_features={}, output_features={}, bias={}'.format(
            self.input_features, self.output_features, self.bias is not None
        )


# What follows is ours: use the pieces above and print what they compute.
print(gradcheck(MulConstant.apply, (randn(4, 3, dtype=torch.double, requires_grad=True), 2.5)))
print(gradcheck(linear, (randn(5, 3, dtype=torch.double, requires_grad=True),
                         randn(4, 3, dtype=torch.double, requires_grad=True),
                         randn(4, dtype=torch.double, requires_grad=True))))

module = Linear(3, 2)
print(module)
with torch.no_grad():
    module.weight.copy_(rand(2, 3) * 0.2 - 0.1)
    module.bias.copy_(rand(2) * 0.2 - 0.1)
x = randn(4, 3, requires_grad=True)
out = MulConstant.apply(module(x), 3.0)
out.pow(2).sum().backward()
print(out.detach())
print(x.grad)
print(module.weight.grad)
print(module.bias.grad)
no_bias = Linear(3, 2, bias=False)
print(no_bias.bias, len(list(no_bias.parameters())))
