"""Tests of values (isnan, isclose, all, ...), nan_to_num, clamp_min/max, count_nonzero, and
the paired reductions (std_mean, var_mean, aminmax): thin layers over the op table's kernels
and the existing reductions, so their gradients are those ops' gradients."""
import math
import warnings

import numpy as np

from nbgrad.ops.targets import target_of

from .. import _dtype
from ..tensor import Tensor
from . import inplace, pointwise, reduction, tensor_method
from .pointwise import RUN, compute

__all__ = ["isnan", "isinf", "isfinite", "isposinf", "isneginf", "isreal", "nan_to_num", "nan_to_num_", "all",
           "any", "isclose", "allclose", "equal", "clamp_min", "clamp_max", "count_nonzero", "std_mean",
           "var_mean", "aminmax"]


def _test(kernel):
    def op(input):
        if not isinstance(input, Tensor):
            raise TypeError(f"{kernel}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
        return Tensor._wrap(compute(kernel, (input,), out_dtype=_dtype.bool))
    op.__name__ = op.__qualname__ = kernel
    op.__doc__ = f"Elementwise {kernel} as a bool tensor (integers: never NaN or infinite)."
    return tensor_method(kernel)(op)


isnan, isinf, isfinite = _test("isnan"), _test("isinf"), _test("isfinite")


@tensor_method()
def isposinf(input):
    """Elementwise: is +inf."""
    return isinf(input) & (input > 0)


@tensor_method()
def isneginf(input):
    """Elementwise: is -inf."""
    return isinf(input) & (input < 0)


@tensor_method()
def isreal(input):
    """Elementwise: has no imaginary part (always True: nbgrad has no complex dtypes)."""
    return Tensor._wrap(target_of(input._data).ones(input._data.shape, np.bool_))


def _nan_to_num_values(input, nan, posinf, neginf):
    if input.dtype.is_floating_point:
        info = np.finfo(input._data.dtype)
        top, bottom = float(info.max), float(info.min)
    else:
        top = bottom = 0
    return dict(nan=0.0 if nan is None else nan, posinf=top if posinf is None else posinf,
                neginf=bottom if neginf is None else neginf)


@tensor_method()
def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    """NaN, +inf and -inf replaced (by default with 0 and the dtype's largest and lowest values)."""
    if not input.dtype.is_floating_point:
        result = input.clone()
    else:
        result = RUN["nan_to_num"](input, **_nan_to_num_values(input, nan, posinf, neginf))
    return _to_out(result, out)


_nan_to_num_inplace = inplace._elementwise_inplace("nan_to_num", RUN["nan_to_num"],
                                                   params=(("nan", 0.0), ("posinf", 0), ("neginf", 0)))


@tensor_method()
def nan_to_num_(self, nan=0.0, posinf=None, neginf=None):
    """In-place ``nan_to_num``."""
    if not self.dtype.is_floating_point:
        return self
    return _nan_to_num_inplace(self, **_nan_to_num_values(self, nan, posinf, neginf))


def _to_out(result, out):
    """Write ``result`` into ``out`` (resized as PyTorch resizes an empty one) and return ``out``."""
    if out is None:
        return result
    from .out import write_out
    return write_out(out, result)


def _truth(input, dim, keepdim, every, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    nonzero = input if input.dtype is _dtype.bool else (input != 0)
    if dim is None:
        count, n = reduction.sum(nonzero), input._data.size
    else:
        count = reduction.sum(nonzero, dim, keepdim)
        dims = reduction._dims(dim, input.ndim, name)
        n = math.prod(input._data.shape[d] for d in dims) if input.ndim else 1
    return (count == n) if every else (count > 0)


@tensor_method()
def all(input, dim=None, keepdim=False, *, out=None):
    """Whether every element (along ``dim``) is nonzero; a bool tensor."""
    return _to_out(_truth(input, dim, keepdim, True, "all"), out)


@tensor_method()
def any(input, dim=None, keepdim=False, *, out=None):
    """Whether any element (along ``dim``) is nonzero; a bool tensor."""
    return _to_out(_truth(input, dim, keepdim, False, "any"), out)


def _check_same_dtype(input, other, name):
    if not isinstance(other, Tensor):
        raise TypeError(f"{name}(): argument 'other' (position 2) must be Tensor, not {type(other).__name__}")
    if input.dtype is not other.dtype:
        raise RuntimeError(f"{input.dtype.legacy} did not match {other.dtype.legacy}")


@tensor_method()
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other|, elementwise; infinities close only to themselves."""
    _check_same_dtype(input, other, "isclose")
    if rtol < 0:
        raise RuntimeError(f"rtol must be greater than or equal to zero, but got {rtol}")
    if atol < 0:
        raise RuntimeError(f"atol must be greater than or equal to zero, but got {atol}")
    a, b = input.detach(), other.detach()
    close = a == b
    if equal_nan:
        close = close | (isnan(a) & isnan(b))
    if input.dtype is _dtype.bool or (rtol == 0 and atol == 0):
        return close
    if not input.dtype.is_floating_point:
        a, b = a.double(), b.double()
    within = (a - b).abs() <= atol + rtol * b.abs()
    return close | (within & isfinite(a) & isfinite(b))


@tensor_method()
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``isclose`` everywhere (broadcast), as a Python bool."""
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


@tensor_method()
def equal(input, other):
    """Same shape and the same values (NaN never equal), as a Python bool."""
    if not isinstance(other, Tensor):
        raise TypeError(f"equal(): argument 'other' (position 2) must be Tensor, not {type(other).__name__}")
    if input.shape != other.shape:
        return False
    return bool((input == other).all())


@tensor_method()
def clamp_min(input, min):
    """``clamp(input, min=min)``."""
    return pointwise.clamp(input, min=min)


@tensor_method()
def clamp_max(input, max):
    """``clamp(input, max=max)``."""
    return pointwise.clamp(input, max=max)


@tensor_method()
def clamp_min_(self, min):
    """In-place ``clamp_min``."""
    return self.clamp_(min=min)


@tensor_method()
def clamp_max_(self, max):
    """In-place ``clamp_max``."""
    return self.clamp_(max=max)


@tensor_method()
def count_nonzero(input, dim=None):
    """The number of nonzero elements (along ``dim``), int64."""
    nonzero = input != 0
    if dim is None:
        return reduction.sum(nonzero)
    return reduction.sum(nonzero, dim)


def _paired(spread, name, input, dim, unbiased, keepdim, correction):
    """(spread, mean): the spread's warnings name the paired function, as PyTorch's do."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = spread(input, dim, unbiased, keepdim, correction=correction)
    for w in caught:
        warnings.warn(str(w.message).replace(f"{spread.__name__}()", f"{name}()"), w.category, stacklevel=3)
    return first, reduction.mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(std, mean) over ``dim``, as a tuple."""
    return _paired(reduction.std, "std_mean", input, dim, unbiased, keepdim, correction)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(var, mean) over ``dim``, as a tuple."""
    return _paired(reduction.var, "var_mean", input, dim, unbiased, keepdim, correction)


class _MinMax(tuple):
    """``torch.return_types.aminmax``: (min, max) with those field names."""
    __slots__ = ()

    def __new__(cls, min, max):
        return tuple.__new__(cls, (min, max))

    min = property(lambda self: self[0])
    max = property(lambda self: self[1])

    def __repr__(self):
        return f"torch.return_types.aminmax(\nmin={self[0]!r},\nmax={self[1]!r})"


_MinMax.__name__ = _MinMax.__qualname__ = "aminmax"
reduction.return_types.aminmax = _MinMax


@tensor_method()
def aminmax(input, *, dim=None, keepdim=False):
    """(amin, amax) over ``dim`` (all dims when None)."""
    if input._data.size == 0 and dim is None:
        raise RuntimeError("aminmax(): cannot compute aminmax over an empty dimension as the operation has "
                           "no identity.")
    if dim is not None and input.ndim and input._data.shape[reduction._one_dim(dim, input.ndim, "aminmax")] == 0:
        raise IndexError(f"aminmax: Expected reduction dim {reduction._one_dim(dim, input.ndim, 'aminmax')} to have "
                         "non-zero size.")
    dims = () if dim is None else dim
    if dim is None and keepdim:
        dims = tuple(range(input.ndim))
    return _MinMax(reduction.amin(input, dims, keepdim), reduction.amax(input, dims, keepdim))


def _inplace_of(functional, name):
    """``name``: ``functional`` written back into the tensor (an in-place update like any other)."""
    def method(self, *args, **kwargs):
        operands = tuple(a for a in args if isinstance(a, Tensor))
        return inplace.apply_inplace(self, lambda old: functional(old, *args, **kwargs), operands)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place ``{functional.__name__}``."
    setattr(Tensor, name, method)
    return method


for _name in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_and", "logical_or", "logical_xor",
              "logical_not"):
    _inplace_of(getattr(pointwise, _name), _name + "_")
__all__ += ["clamp_min_", "clamp_max_"]
