"""Reductions and softmax: kernels from ``nbgrad.ops.reduce``, backward rules as nodes.

The accumulating reductions (sum, mean, prod, var, std, logsumexp) are records of the op
table's ``ACCUMULATIONS``: their kernels and their gradient expressions come from there, and
``_gradient`` reads an expression the way a pointwise op's is read (a fused kernel, or, when
the step itself is recorded for ``create_graph``, the same expression on Tensors).

The gradient of a sum is its incoming gradient spread back over the summed dims:
``_expand``, a broadcast view (no copy) recorded as ``ExpandBackward0``, whose own gradient
is a sum again. So sum and expand are each other's backward, and higher-order gradients
need nothing more. A saved output is unpacked with its node as ``grad_fn`` while recording,
as PyTorch does, so that second derivatives flow through it.
"""
import math
import warnings

import numpy as np

from nbgrad.ops import reduce as kernels
from nbgrad.ops.table import ACCUMULATIONS, names_in
from nbgrad.ops.targets import target_of

from .. import _dtype
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph import Node
from ..tensor import Tensor, _wrap_dim, needs_grad, record
from . import tensor_method
from .pointwise import derivative, exp, maximum, minimum, where

__all__ = ["sum", "mean", "prod", "max", "min", "amax", "amin", "argmax", "argmin", "var", "std",
           "logsumexp", "softmax", "log_softmax", "return_types"]

keep_shape = kernels.keep_shape


def _reduce(t):
    """The reduction kernels of ``t``'s target."""
    return target_of(t._data).reduce


def _reshaped(data, shape):
    return target_of(data).reshape(data, shape)


# -- dims and shapes ------------------------------------------------------------------------------
def _dims(dim, ndim, name):
    """The reduced dims, wrapped, distinct and sorted; ``None`` and ``()`` mean all of them."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        dims = (dim,)
    elif isinstance(dim, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in dim):
        if not dim:
            return tuple(range(ndim))
        dims = dim
    else:
        raise TypeError(f"{name}(): argument 'dim' must be tuple of ints, not {type(dim).__name__}")
    wrapped = []
    for d in dims:
        d = _wrap_dim(int(d), ndim)
        if d in wrapped:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        wrapped.append(d)
    return tuple(sorted(wrapped)) if ndim else ()


def _one_dim(dim, ndim, name):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}(): argument 'dim' must be int, not {type(dim).__name__}")
    return _wrap_dim(int(dim), ndim)


def _out_shape(shape, dims, keepdim):
    if keepdim:
        return keep_shape(shape, dims)
    return tuple(n for d, n in enumerate(shape) if d not in dims)


def _sum_dtype(input):
    return input._data.dtype if input.dtype.is_floating_point else np.dtype(np.int64)


def _keep(g, keep):
    """An incoming gradient's data in the keepdim shape (a view)."""
    return target_of(g._data).reshape(g._data, keep)


def _result(node, saved):
    """A saved output as the tensor it is: its grad_fn is ``node`` (only while recording)."""
    t = Tensor._wrap(saved._data)
    t._version_counter = saved._version_counter
    t.grad_fn = node
    return t


# -- the input's gradient of an accumulation, from the op table --------------------------------------
def _gradient(node, grad, x=None, y=None, m=None, s=None):
    """The input's gradient of ``node``'s accumulation (``node.op``), from its table
    expression over ``grad``, the input ``x``, the saved output ``y``, the center ``m`` (the
    mean, float64, keepdim shape) and the scale ``s``. An expression that reads no ``x`` (sum,
    mean) is computed at the output's size and broadcast by ``_expand``, a view."""
    rec = ACCUMULATIONS[node.op]
    if "x" not in names_in(rec.grads["x"]):
        return _expand(derivative(rec, "x", {"g": grad, "n": getattr(node, "count", 1)}), node.keep, node.in_shape)
    if needs_grad((grad, x)):                  # recorded: keepdim views and the mean of x, all differentiable
        values = {"g": grad.reshape(node.keep), "x": x, "s": s, "n": getattr(node, "count", 1)}
        if y is not None:
            values["y"] = _result(node, y).reshape(node.keep)
        if m is not None:
            values["m"] = mean(x, node.dims, keepdim=True)
    else:
        keep = lambda t: Tensor._wrap(target_of(t._data).reshape(t._data, node.keep))
        values = {"g": keep(grad), "x": x, "s": s, "n": getattr(node, "count", 1)}
        if y is not None:
            values["y"] = keep(y)
        if m is not None:
            values["m"] = Tensor._wrap(target_of(m).astype(m, x._data.dtype))
    return derivative(rec, "x", values)


# -- sum and its adjoint, expand ----------------------------------------------------------------------
class _Summed(Node):
    """out = x summed (or averaged) over dims, reshaped."""
    count = 1

    def backward(self, grad):
        return (_gradient(self, grad),)


class SumBackward0(_Summed):
    op = "sum"


class SumBackward1(_Summed):
    op = "sum"


class MeanBackward0(_Summed):
    op = "mean"


class MeanBackward1(_Summed):
    op = "mean"


class ExpandBackward0(Node):
    def backward(self, grad):
        return (_sum(grad, self.dims, self.in_shape, SumBackward1),)


def _sum(x, dims, out_shape, node, out_dtype=None, scale=1, **attrs):
    """``x`` summed over ``dims`` (times ``scale``), given ``out_shape``; recorded as ``node``."""
    data = x._data
    target = target_of(data)
    if data.dtype is _dtype.F16 or data.dtype is _dtype.BF16:    # summed in float32, stored in 2 bytes (as PyTorch)
        f32 = _dtype.float32.numpy
        data = target.astype(target.reduce.sum(target.astype(data, f32), dims, f32, scale), out_dtype or data.dtype)
    else:
        data = target.reduce.sum(data, dims, out_dtype or _sum_dtype(x), scale)
    return record(node, target.reshape(data, out_shape), (x,), keep=data.shape, in_shape=x._data.shape, **attrs)


def _expand(g, keep, shape):
    """``g`` viewed in the keepdim shape ``keep`` and broadcast to ``shape``: a read-only view,
    so an in-place write into it fails instead of writing one element many times."""
    kept = _keep(g, keep)
    dims = tuple([d for d in range(len(shape)) if keep[d] == 1 and shape[d] != 1])
    strides = tuple([0 if d in dims else kept.strides[d] for d in range(len(shape))])
    data = target_of(kept).as_strided(kept, shape, strides, writeable=False)
    return record(ExpandBackward0, data, (g,), dims=dims, in_shape=g._data.shape)


@tensor_method()
def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    dims = _dims(dim, input.ndim, "sum")
    node = SumBackward0 if dim is None and not keepdim else SumBackward1
    return _sum(input, dims, _out_shape(input.shape, dims, keepdim), node)


@tensor_method()
def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point or "
                           f"complex dtype. Got: {input.dtype.legacy}")
    dims = _dims(dim, input.ndim, "mean")
    n = math.prod(input._data.shape[d] for d in dims)
    node = MeanBackward0 if dim is None and not keepdim else MeanBackward1
    return _sum(input, dims, _out_shape(input.shape, dims, keepdim), node,
                scale=1.0 / n if n else math.nan, count=n)


@tensor_method()
def sum_to_size(input, *size):
    """Sum down to ``size``, a shape ``input`` broadcasts from: leading dims are summed away,
    size-1 dims summed in place. The autograd engine reduces broadcast gradients with this."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    size = tuple(size)
    shape = input._data.shape
    if not size:                # to a number: a new tensor, as in PyTorch (even from a 0-d one)
        return input.sum()
    if size == shape:
        return input
    lead = len(shape) - len(size)
    if lead < 0 or any(s != 1 and s != n for s, n in zip(size, shape[lead:])):
        raise RuntimeError(f"size {{{list(size)}}} is not expandable to size {{{list(shape)}}}.")
    dims = tuple(range(lead)) + tuple(d for d in range(lead, len(shape)) if size[d - lead] == 1 and shape[d] != 1)
    return _sum(input, dims, size, SumBackward1)


# -- prod ----------------------------------------------------------------------------------------------
class _ProdBackward(Node):
    """PyTorch's rule: the table's expression where x has no zero; else g times the product
    of the other elements (exact with zeros), or 0 everywhere for a whole-tensor prod with
    several zeros."""
    op = "prod"
    _saved_names = ("self", "result")     # grad_fn._saved_self... (PyTorch's names)

    def backward(self, grad):
        x, y = self.saved_tensors
        _reduce(grad).check_saved("prod backward", _keep(grad, self.keep), x._data, self.dims)
        if not self.dims:                      # 0-d: the gradient passes
            return (grad,)
        zeros = _reduce(x).count_zeros(x._data)
        if not zeros:
            return (_gradient(self, grad, x, y),)
        if needs_grad((grad, x)):
            raise NotImplementedError("a recorded (create_graph) backward of prod with zeros in the "
                                      "input is not supported")
        if zeros > 1 and type(self) is ProdBackward0:
            return (Tensor._wrap(target_of(x._data).zeros(self.in_shape, x._data.dtype)),)
        return (Tensor._wrap(_reduce(grad).prod_backward(_keep(grad, self.keep), x._data, self.dims)),)


class ProdBackward0(_ProdBackward):
    pass


class ProdBackward1(_ProdBackward):
    pass


@tensor_method()
def prod(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        dims, node = tuple(range(input.ndim)), ProdBackward0
    else:
        dims, node = _dims(_one_dim(dim, input.ndim, "prod"), input.ndim, "prod"), ProdBackward1
    data = _reduce(input).prod(input._data, dims, _sum_dtype(input))
    data = _reshaped(data, _out_shape(input.shape, dims, keepdim))
    out = record(node, data, (input,), keep=keep_shape(input._data.shape, dims), in_shape=input._data.shape,
                 dims=dims)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(input, out.detach())
    return out


# -- max, min, amax, amin, argmax, argmin ----------------------------------------------------------------------
class _ValuesIndices(tuple):
    """A (values, indices) pair like ``torch.return_types.max``: unpacks, indexes, names its fields."""
    __slots__ = ()
    n_fields = 2

    def __new__(cls, values, indices):
        return tuple.__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]

    def __repr__(self):
        return f"torch.return_types.{type(self).__name__}(\nvalues={self[0]!r},\nindices={self[1]!r})"


class return_types:
    """The named tuples that reductions return."""
    max = type("max", (_ValuesIndices,), {"__slots__": ()})
    min = type("min", (_ValuesIndices,), {"__slots__": ()})


class _EvenBackward(Node):
    """The gradient of an extreme value over ``dims``, shared evenly among the tied elements:
    amax/amin as ``mask * (g / count)``; max()/min() as PyTorch's ``evenly_distribute_backward``
    (``nan_too``: NaNs tie with a NaN maximum, and the other elements get exactly 0)."""
    _saved_names = ("self", "result")          # grad_fn._saved_self... (PyTorch's names)
    nan_too = False

    def backward(self, grad):
        x, y = self.saved_tensors
        share = lambda g: _reduce(g).distribute_backward(_keep(g, self.keep), x._data, _keep(y, self.keep),
                                                      self.dims, self.nan_too)
        if needs_grad((grad, x)):
            shares = Tensor._wrap(share(Tensor._wrap(target_of(x._data).ones(self.keep, x._data.dtype))))
            gx = _expand(grad, self.keep, self.in_shape) * shares
            return (where(shares != 0, gx, 0.0) if self.nan_too else gx,)
        return (Tensor._wrap(share(grad)),)


class MaxBackward1(_EvenBackward):
    nan_too = True


class MinBackward1(_EvenBackward):
    nan_too = True


class AmaxBackward0(_EvenBackward):
    pass


class AminBackward0(_EvenBackward):
    pass


class _IndexBackward(Node):
    """The gradient of values picked at ``indices`` along ``dim``: to those positions only,
    exact zeros elsewhere (PyTorch scatters into zeros)."""
    _saved_names = ("indices",)          # grad_fn._saved_self... (PyTorch's names)

    def backward(self, grad):
        idx, = self.saved_tensors
        put = lambda g: _reduce(g).index_backward(_keep(g, self.keep), idx._data, self.in_shape, self.dim,
                                               self.dtype)
        if needs_grad((grad,)):
            picked = Tensor._wrap(put(Tensor._wrap(target_of(idx._data).ones(self.keep, self.dtype))) != 0)
            return (where(picked, _expand(grad, self.keep, self.in_shape), 0.0),)
        return (Tensor._wrap(put(grad)),)


class MaxBackward0(_IndexBackward):
    pass


class MinBackward0(_IndexBackward):
    pass


def _check_nonempty(input, dims, name, specified, given=None):
    """An empty input must name its reduced dims, none of them of size 0; the error names the
    first such dim of ``given`` (the dims as written, in their order, as amax's error does)
    or of ``dims``."""
    if input._data.size:
        return
    if not specified:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           "Specify the reduction dim with the 'dim' argument.")
    for d in given or dims:
        if input._data.shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _extreme(input, dim, keepdim, smallest, name, node):
    """Whole-tensor (dim None) or per-dims extreme values, recorded with an even split of ties."""
    specified = dim is not None and dim != () and dim != []
    dims = _dims(dim, input.ndim, name)
    _check_nonempty(input, dims, name, specified, (dim,) if isinstance(dim, (int, np.integer)) else dim)
    values, _ = _reduce(input).max(input._data, dims, smallest)
    data = _reshaped(values, _out_shape(input.shape, dims, keepdim))
    out = record(node, data, (input,), keep=values.shape, in_shape=input._data.shape, dims=dims)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(input, out.detach())
    return out


def _extreme_along(input, dim, keepdim, smallest, name, node, result):
    d = _one_dim(dim, input.ndim, name)
    dims = (d,) if input.ndim else ()
    _check_nonempty(input, dims, name, True)
    values, indices = _reduce(input).max(input._data, dims, smallest)
    shape = _out_shape(input.shape, dims, keepdim)
    idx = Tensor._wrap(_reshaped(indices, shape))
    out = record(node, _reshaped(values, shape), (input,), keep=values.shape, in_shape=input._data.shape, dim=d,
                 dtype=input._data.dtype)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(idx)
    return result(out, idx)


def _max_or_min(smallest):
    name = "min" if smallest else "max"
    pairwise = minimum if smallest else maximum
    whole = MinBackward1 if smallest else MaxBackward1
    along = MinBackward0 if smallest else MaxBackward0
    result = getattr(return_types, name)

    def op(input, dim=None, keepdim=False, *, other=None):
        if isinstance(dim, Tensor) or other is not None:
            return pairwise(input, dim if other is None else other)
        if dim is None:
            return _extreme(input, None, False, smallest, name, whole)
        return _extreme_along(input, dim, keepdim, smallest, name, along, result)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"``{name}(input)``: the {name}imum value, 0-d; ``{name}(input, dim, keepdim=False)``: "
                  f"named tuple (values, indices); ``{name}(input, other)``: ``{pairwise.__name__}``.")
    return op


max = tensor_method("max")(_max_or_min(False))
min = tensor_method("min")(_max_or_min(True))


@tensor_method()
def amax(input, dim=(), keepdim=False):
    return _extreme(input, dim, keepdim, False, "amax", AmaxBackward0)


@tensor_method()
def amin(input, dim=(), keepdim=False):
    return _extreme(input, dim, keepdim, True, "amin", AminBackward0)


def _arg(input, dim, keepdim, smallest, name):
    if input.dtype is _dtype.bool:
        raise RuntimeError(f"{name}(): does not support bool input")
    if dim is None:
        dims = tuple(range(input.ndim))
        if input._data.size == 0:
            raise IndexError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
    else:
        dims = _dims(_one_dim(dim, input.ndim, name), input.ndim, name)
        _check_nonempty(input, dims, name, True)
    _, indices = _reduce(input).max(input._data, dims, smallest, ordered=True)
    return Tensor._wrap(_reshaped(indices, _out_shape(input.shape, dims, keepdim)))


@tensor_method()
def argmax(input, dim=None, keepdim=False):
    return _arg(input, dim, keepdim, False, "argmax")


@tensor_method()
def argmin(input, dim=None, keepdim=False):
    return _arg(input, dim, keepdim, True, "argmin")


# -- var, std ----------------------------------------------------------------------------------------------
def _no_dof_backward(grad, x, node):
    """PyTorch's gradient of a variance over all of x with no degrees of freedom left
    (N <= correction): g * inf, NaN where x equals its mean."""
    m = Tensor._wrap(target_of(node.mean).astype(node.mean, x._data.dtype))
    return (_expand(grad, node.keep, node.in_shape) * where(x == m, math.nan, math.inf),)


class VarBackward0(Node):
    op = "var"
    _saved_names = ("self",)     # grad_fn._saved_self... (PyTorch's names)

    def backward(self, grad):
        x, = self.saved_tensors
        _reduce(grad).check_saved("var backward", _keep(grad, self.keep), x._data, self.dims)
        if self.whole and self.dof <= 0:
            return _no_dof_backward(grad, x, self)
        return (_gradient(self, grad, x, m=self.mean, s=2.0 / self.dof if self.dof else math.inf),)


class StdBackward0(Node):
    op = "std"
    _saved_names = ("self", "result")     # grad_fn._saved_self... (PyTorch's names)

    def backward(self, grad):
        x, y = self.saved_tensors
        _reduce(grad).check_saved("std backward", _keep(grad, self.keep), x._data, self.dims)
        if self.whole and self.dof <= 0:
            y = _result(self, y)
            return _no_dof_backward(where(y == 0, 0.0, grad / (2 * y)), x, self)
        return (_gradient(self, grad, x, y, m=self.mean, s=1.0 / self.dof if self.dof else math.inf),)


def _variance(input, dim, unbiased, keepdim, correction, name):
    if isinstance(dim, bool):                  # var(input, unbiased)
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{name}() received an invalid combination of arguments: unbiased and correction "
                        "cannot both be given")
    if correction is None:
        correction = 0 if unbiased is False else 1
    if not input.dtype.is_floating_point:
        raise RuntimeError("std and var only support floating point and complex dtypes")
    dims = _dims(dim, input.ndim, name)
    n = math.prod(input._data.shape[d] for d in dims)
    dof = n - correction
    if dof <= 0:
        warnings.warn(f"{name}(): degrees of freedom is <= 0. Correction should be strictly less than the "
                      "reduction factor (input numel divided by output numel).", UserWarning, stacklevel=3)
    data, mu = _reduce(input).var(input._data, dims, correction, root=name == "std")
    node = StdBackward0 if name == "std" else VarBackward0
    # over all of x (dim None), PyTorch's backward treats N <= correction apart
    out = record(node, _reshaped(data, _out_shape(input.shape, dims, keepdim)), (input,), keep=data.shape,
                 in_shape=input._data.shape, dims=dims, dof=dof, mean=mu, whole=dim is None or not input.ndim)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(*((input, out.detach()) if name == "std" else (input,)))
    return out


@tensor_method()
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim``, divided by (N - correction); ``unbiased=False`` means correction 0."""
    return _variance(input, dim, unbiased, keepdim, correction, "var")


@tensor_method()
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _variance(input, dim, unbiased, keepdim, correction, "std")


# -- logsumexp, softmax, log_softmax ----------------------------------------------------------------------------
def _float_input(input):
    return input if input.dtype.is_floating_point else input.to(_dtype.get_default_dtype())


class LogsumexpBackward0(Node):
    op = "logsumexp"
    _saved_names = ("self", "result")     # grad_fn._saved_self... (PyTorch's names)

    def backward(self, grad):
        x, y = self.saved_tensors
        _reduce(grad).check_saved("logsumexp backward", _keep(grad, self.keep), x._data, self.dims)
        return (_gradient(self, grad, x, y),)


@tensor_method()
def logsumexp(input, dim, keepdim=False):
    if dim is None:                            # PyTorch has no "all dims" default here
        raise TypeError("logsumexp(): argument 'dim' must be tuple of ints, not NoneType")
    input = _float_input(input)
    dims = _dims(dim, input.ndim, "logsumexp")
    data = _reduce(input).logsumexp(input._data, dims)
    out = record(LogsumexpBackward0, _reshaped(data, _out_shape(input.shape, dims, keepdim)), (input,),
                 keep=data.shape, in_shape=input._data.shape, dims=dims)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(input, out.detach())
    return out


class _SoftmaxBackward(Node):
    """The kernel's gradient, recorded (under ``create_graph``) as the op PyTorch calls
    ``_softmax_backward_data``, whose own backward is below: the formula is the kernel's
    alone."""
    _saved_names = ("result",)          # grad_fn._saved_result (PyTorch's name)

    def backward(self, grad):
        y, = self.saved_tensors
        return (_softmax_backward_data(grad, _result(self, y) if is_grad_enabled() else y, self.dim, self.log),)


class SoftmaxBackward0(_SoftmaxBackward):
    log = False


class LogSoftmaxBackward0(_SoftmaxBackward):
    log = True


class SoftmaxBackwardDataBackward0(Node):
    """gx = y * (g - sum(g * y)): to g, the same op again; to y, gg * (g - sum(g * y)) - g * sum(gg * y)."""
    _saved_names = ("grad_output", "output")     # PyTorch's names

    def backward(self, gg):
        g, y = self.saved_tensors
        dg = _softmax_backward_data(gg, y, self.dim, False) if self.needs_input_grad[0] else None
        dy = None
        if self.needs_input_grad[1]:
            dy = gg * (g - sum(g * y, self.dim, keepdim=True)) - g * sum(gg * y, self.dim, keepdim=True)
        return dg, dy


class LogSoftmaxBackwardDataBackward0(Node):
    """gx = g - exp(y) * sum(g): to g, gg - sum(gg * exp(y)); to y, -gg * exp(y) * sum(g)."""
    _saved_names = ("grad_output", "output")     # PyTorch's names

    def backward(self, gg):
        g, y = self.saved_tensors
        e = exp(y)
        dg = gg - sum(gg * e, self.dim, keepdim=True) if self.needs_input_grad[0] else None
        dy = -gg * e * sum(g, self.dim, keepdim=True) if self.needs_input_grad[1] else None
        return dg, dy


def _softmax_backward_data(grad, y, dim, log):
    """The gradient of softmax (``log``: log_softmax) at output ``y``: the kernel, recorded as
    PyTorch records its ``_softmax_backward_data``."""
    node = LogSoftmaxBackwardDataBackward0 if log else SoftmaxBackwardDataBackward0
    out = record(node, _reduce(grad).softmax_backward(grad._data, y._data, dim, log), (grad, y), dim=dim)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(grad, y)
    return out


def _softmax(input, dim, dtype, log):
    if getattr(input, "_traced", False):       # traced by nbgrad.compile
        return input._softmax(dim, dtype, log)
    if dtype is not None:
        input = input.to(dtype)
    if not input.dtype.is_floating_point:
        name = "log_softmax" if log else "softmax"
        raise NotImplementedError(f"\"{name}_lastdim_kernel_impl\" not implemented for '{input.dtype.legacy}'")
    d = _one_dim(dim, input.ndim, "log_softmax" if log else "softmax")
    y = _reduce(input).softmax(input._data, d if input.ndim else 0, log)
    out = record(LogSoftmaxBackward0 if log else SoftmaxBackward0, y, (input,), dim=d)
    if out.grad_fn is not None:
        out.grad_fn.save_for_backward(out.detach())
    return out


@tensor_method()
def softmax(input, dim, dtype=None):
    """exp(x - max) / sum(exp(x - max)) along ``dim``: one fused kernel, stable for any input."""
    return _softmax(input, dim, dtype, log=False)


@tensor_method()
def log_softmax(input, dim, dtype=None):
    """(x - max) - log(sum(exp(x - max))) along ``dim``: one fused kernel, stable for any input."""
    return _softmax(input, dim, dtype, log=True)
