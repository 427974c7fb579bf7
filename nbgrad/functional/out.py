"""``out=``: a result written into a given tensor, as PyTorch does it.

An ``out`` of another shape is resized (with PyTorch's warning when it held elements); a
result that needs gradients cannot go to ``out`` (PyTorch refuses: ``out=`` is not
differentiable); the dtype must be one the result casts to safely.
"""
import warnings

from nbgrad.ops.targets import common_target

from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor

__all__ = ["write_out", "with_out"]


def write_out(out, result, name="out"):
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic differentiation, "
                           "but one of the arguments requires grad.")
    if result.dtype.kind > out.dtype.kind:
        raise RuntimeError(f"result type {result.dtype.legacy} can't be cast to the desired output type "
                           f"{out.dtype.legacy}")
    target = common_target([out._data, result._data])
    if out._data.shape != result._data.shape:
        if out._data.size:
            warnings.warn(f"An output with one or more elements was resized since it had shape "
                          f"{list(out._data.shape)}, which does not match the required output shape "
                          f"{list(result._data.shape)}. This behavior is deprecated, and in a future PyTorch "
                          "release outputs will not be resized unless they have zero elements. You can explicitly "
                          "reuse an out tensor t by resizing it, inplace, to zero elements with t.resize_(0).",
                          UserWarning, stacklevel=3)
        out._data = target.empty(result._data.shape, out._data.dtype)
    target.copy_into(out._data, result._data)
    out._version_counter.value += 1
    return out


def with_out(fn, name=None):
    """``fn`` with an ``out=`` keyword."""
    def wrapper(*args, out=None, **kwargs):
        result = fn(*args, **kwargs)
        if out is None:
            return result
        if isinstance(result, tuple):
            for o, r in zip(out, result):
                write_out(o, r, wrapper.__name__)
            return out
        return write_out(out, result, wrapper.__name__)
    wrapper.__name__ = wrapper.__qualname__ = name or fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper
