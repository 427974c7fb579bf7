"""User-defined differentiable operations: ``class MyFn(Function)`` with static ``forward``
and ``backward``, called as ``MyFn.apply(*args)``, as in PyTorch.

As in PyTorch, the ``ctx`` that ``forward`` fills in *is* the backward node: each Function
subclass gets a node class named ``<Name>Backward`` (made by the metaclass), an instance of
it is created per call, and becomes the ``grad_fn`` of the outputs. So ``y.grad_fn.k`` is
the ``ctx.k`` set in ``forward``, and the saved tensors use ``Node``'s version checks and
are freed by the engine like any other node's.

The node's edges are those of the tensor arguments only (non-tensor arguments have no
place in the graph, as in PyTorch's ``next_functions``); ``backward`` still returns one
value per argument, and the node maps them back to the tensor positions.
"""
import functools
import inspect
import itertools
import warnings

from nbgrad.ops.targets import target_of

from . import forward_ad
from .grad_mode import is_grad_enabled, no_grad
from .graph import Node

__all__ = ["FunctionCtx", "BackwardCFunction", "FunctionMeta", "Function", "once_differentiable",
           "InplaceFunction"]

_function_ids = itertools.count()


class FunctionCtx:
    """What ``forward`` (or ``setup_context``) may do with ``ctx``."""
    __slots__ = ()

    def save_for_backward(self, *tensors):
        """Keep tensors for ``backward`` (read back through ``ctx.saved_tensors``); their
        versions are recorded when ``apply`` returns, so in-place changes made after it are caught."""
        from ..tensor import Tensor
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save variables, but argument {i} is of type "
                                f"{type(t).__name__}")
        self.to_save = tensors

    def save_for_forward(self, *tensors):
        self.saved_for_forward = tensors

    def mark_dirty(self, *args):
        """``args`` (inputs) were modified in place by ``forward`` and are returned as outputs."""
        self.dirty_tensors = args

    def mark_non_differentiable(self, *args):
        """These outputs get no gradient; ``backward`` still receives (zero) gradients for them."""
        self.non_differentiable = args

    def set_materialize_grads(self, value):
        """Whether ``backward`` receives zeros (True, the default) or None for outputs that got no gradient."""
        self.materialize_grads = value


class BackwardCFunction(FunctionCtx, Node):
    """The node (and ``ctx``) of one call of a custom Function."""
    __slots__ = ()
    materialize_grads = True

    @property
    def needs_input_grad(self):
        return self._needs_input_grad

    def _user_backward(self):
        cls = self._forward_cls
        if cls.backward is not Function.backward and cls.vjp is not Function.vjp:
            raise RuntimeError("Implementing both 'backward' and 'vjp' for a custom Function is not allowed. "
                               "You should only implement one of them.")
        return cls.vjp if cls.vjp is not Function.vjp else cls.backward

    def apply(self, *grads):
        """Run the user's ``backward`` on one gradient per output (None for non-tensor
        outputs), check what it returns, and hand the engine one gradient per edge."""
        full = [None] * self._num_forward_outputs
        for pos, g in zip(self._tensor_outputs, grads):
            full[pos] = g
        result = self._user_backward()(self, *full)
        if not isinstance(result, tuple):
            result = (result,)
        expected = len(self._is_tensor_input)
        if len(result) > expected and all(r is None for r in result[expected:]):
            result = result[:expected]      # extra Nones are allowed, as in PyTorch
        if len(result) != expected:
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients "
                               f"(expected {expected}, got {len(result)})")
        out = []
        for i, (g, is_tensor) in enumerate(zip(result, self._is_tensor_input)):
            if not is_tensor:
                if g is not None:
                    raise RuntimeError(f"function {self.name()} returned a gradient different than None at "
                                       f"position {i + 1}, but the corresponding forward input was not a Variable")
                continue
            if g is not None:
                _check_grad_shape(self, len(out), g, self._input_meta[len(out)][0])
            out.append(g)
        return tuple(out)


def _check_grad_shape(node, index, grad, shape):
    """A gradient must have its input's shape or one the input broadcasts to."""
    gshape = tuple(grad.shape)
    ok = len(gshape) >= len(shape) and all(
        n == g or n == 1 for n, g in zip(reversed(shape), reversed(gshape)))
    if not ok:
        raise RuntimeError(f"Function {node.name()} returned an invalid gradient at index {index} - got "
                           f"{list(gshape)} but expected shape compatible with {list(shape)}")


class FunctionMeta(type):
    """Gives every Function subclass its own node class, ``<Name>Backward``."""

    def __init__(cls, name, bases, attrs):
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,),
                                 {"__slots__": (), "_forward_cls": cls,
                                  "_autograd_function_id": next(_function_ids)})
        super().__init__(name, bases, attrs)


class Function(metaclass=FunctionMeta):
    """Base class of custom differentiable operations.

    Subclass it with ``@staticmethod forward(ctx, *args)`` and ``@staticmethod
    backward(ctx, *grad_outputs)`` (or ``forward(*args)`` plus ``setup_context(ctx,
    inputs, output)``), and call ``MyFn.apply(*args)``. ``backward`` returns one gradient
    per argument of ``forward`` (None for non-tensors and inputs needing none).
    """

    def __init__(self, *args, **kwargs):
        warnings.warn(f"{self.__class__} should not be instantiated. Methods on autograd functions are all "
                      "static, so you should invoke them on the class itself. Instantiating an autograd "
                      "function will raise an error in a future version of PyTorch.", DeprecationWarning,
                      stacklevel=2)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Legacy autograd function with non-static forward method is deprecated. Please use "
                           "new-style autograd function with static forward method. (Example: "
                           "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)")

    @staticmethod
    def forward(*args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    vjp = backward

    @staticmethod
    def jvp(ctx, *grad_inputs):
        raise NotImplementedError("You must implement the jvp function for custom autograd.Function to use it "
                                  "with forward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor, _edge, _meta
        new_style = cls.setup_context is not Function.setup_context
        if new_style or kwargs:             # keyword arguments become positional inputs
            bound = inspect.signature(cls.forward).bind(*(() if new_style else (None,)), *args, **kwargs)
            bound.apply_defaults()
            args = bound.args if new_style else bound.args[1:]
        is_tensor = tuple(isinstance(a, Tensor) for a in args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        recording = is_grad_enabled() and any(t.requires_grad for t in tensors)
        ctx = cls._backward_cls(tuple(_edge(t) for t in tensors) if recording else (),
                                tuple(_meta(t) for t in tensors))
        ctx._is_tensor_input = is_tensor
        ctx._needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        dual = forward_ad.has_tangent(tensors)       # forward AD: forward runs without it, then jvp
        with no_grad(), forward_ad.suspended(dual):
            if new_style:
                output = cls.forward(*args)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args)
        output = _wrap_outputs(ctx, tensors, output, recording)
        if dual:
            forward_ad.custom_jvp(cls, ctx, args, output)
        return output


def _wrap_outputs(ctx, inputs, output, recording):
    """Make ``ctx`` the ``grad_fn`` of the differentiable tensor outputs."""
    from ..tensor import Tensor, as_view
    is_tuple = isinstance(output, tuple)
    outputs = list(output) if is_tuple else [output]
    dirty = {id(t) for t in getattr(ctx, "dirty_tensors", ())}
    non_diff = {id(t) for t in getattr(ctx, "non_differentiable", ())}
    input_ids = {id(t) for t in inputs}
    if dirty - {id(o) for o in outputs}:
        raise RuntimeError("Some elements marked as dirty during the forward method were not returned as output. "
                           "The inputs that are modified inplace must all be outputs of the Function.")
    positions = [i for i, o in enumerate(outputs) if isinstance(o, Tensor)]
    for nr, i in enumerate(positions):
        o = outputs[i]
        differentiable = id(o) not in non_diff and o._data.dtype.kind == "f"
        if id(o) in dirty:
            if recording and o.grad_fn is None and o._requires_grad:
                raise RuntimeError("a leaf Variable that requires grad has been used in an in-place operation.")
            o._version_counter.value += 1
        elif id(o) in input_ids:            # an input returned as is: an alias, so it can get a grad_fn
            alias = Tensor._wrap(o._data)
            as_view(alias, *((o, _same) if o._base is None else (o._base, o._view_fn)))
            o = outputs[i] = alias
        if recording and differentiable:
            o.grad_fn = ctx
            o._output_nr = nr
    if recording:
        ctx._num_forward_outputs = len(outputs)
        ctx._tensor_outputs = positions
        ctx.num_outputs = len(positions)
        ctx._output_meta = [(outputs[i]._data.shape, outputs[i].dtype, target_of(outputs[i]._data))
                            for i in positions]
        to_save = ctx.__dict__.pop("to_save", None)
        if to_save:
            Node.save_for_backward(ctx, *to_save)
    return tuple(outputs) if is_tuple else outputs[0]


def _same(t):
    return t


class Error(Node):
    """Stands in for the backward of a ``@once_differentiable`` backward: it may not run."""

    def backward(self, *grads):
        raise RuntimeError("trying to differentiate twice a function that was marked with @once_differentiable")


def once_differentiable(fn):
    """For a ``backward`` that is not itself differentiable: it runs without recording,
    and differentiating its results again (``create_graph``) raises."""
    @functools.wraps(fn)
    def wrapper(ctx, *args):
        from ..tensor import Tensor, record
        with no_grad():
            outputs = fn(ctx, *args)
        if not is_grad_enabled() or not any(isinstance(a, Tensor) and a.requires_grad for a in args):
            return outputs
        many = isinstance(outputs, tuple)
        wrapped = tuple(None if o is None else record(Error, o._data, (Tensor._wrap(o._data, requires_grad=True),))
                        for o in (outputs if many else (outputs,)))
        return wrapped if many else wrapped[0]
    return wrapper


class InplaceFunction(Function):
    """Kept for code written against old PyTorch versions."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace
