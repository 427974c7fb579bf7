"""Cumulative ops along one dim: cumsum, cumprod (kernels from ``ops.scan``), cummax, cummin.

Backward rules are Tensor programs where that is natural, so they record for double
backward: cumsum's gradient is the reversed cumulative sum of the gradient; cumprod's is
PyTorch's (``sum_{k>=i} g_k y_k / x_i`` without zeros; with zeros a kernel computes the
products that skip the zero, or, when recorded, an O(n^2) product of differentiable ops); cummax/cummin
put the gradient back at the positions the running value came from.
"""
import numpy as np

from nbgrad.ops.targets import target_of

from .. import _dtype
from ..autograd.graph import Node
from ..factories import ones, ones_like
from ..tensor import Tensor, _wrap_dim, needs_grad, record
from . import tensor_method
from .indexing import _scatter
from .reduction import _result, _ValuesIndices, return_types
from .linalg import matmul
from .pointwise import where
from .shape import cat, flip

__all__ = ["cumsum", "cumprod", "cummax", "cummin"]


def _scan_dtype(input, dtype):
    if dtype is not None:
        return _dtype.to_dtype(dtype)
    return input.dtype if input.dtype.is_floating_point else _dtype.int64


def _scan(input, dim, dtype, product, name):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}() missing 1 required positional arguments: \"dim\"" if dim is None else
                        f"{name}(): argument 'dim' must be int, not {type(dim).__name__}")
    d = _wrap_dim(int(dim), input.ndim)
    out_dtype = _scan_dtype(input, dtype)
    if out_dtype is not input.dtype:
        input = input.to(out_dtype)
    data = input._data
    target = target_of(data)
    if data.ndim and d < data.ndim - 1:       # along a middle axis: rows of accumulators
        shape3 = (int(np.prod(data.shape[:d], dtype=np.int64)), data.shape[d],
                  int(np.prod(data.shape[d + 1:], dtype=np.int64)))
        out = target.empty(data.shape, out_dtype.numpy)
        target.scan.cumulative_along(target.reshape(target.contiguous(data), shape3), target.reshape(out, shape3),
                                     product)
        return input, d, out
    block, moved = target.sort.rows(data, d)
    out = target.empty(block.shape, out_dtype.numpy)
    target.scan.cumulative(block, out, product)
    return input, d, target.sort.restore(out, moved, d, input.ndim)


class CumsumBackward0(Node):
    def backward(self, grad):
        if not self.ndim:
            return (grad,)
        return (flip(cumsum(flip(grad, self.dim), self.dim), self.dim),)


@tensor_method()
def cumsum(input, dim=None, *, dtype=None, out=None, axis=None):
    """Running sums along ``dim`` (integers and bools sum in int64)."""
    dim = axis if dim is None else dim
    input, d, data = _scan(input, dim, dtype, False, "cumsum")
    result = record(CumsumBackward0, data, (input,), dim=d, ndim=input.ndim)
    if out is not None:
        from .out import write_out
        return write_out(out, result, "cumsum")
    return result


class CumprodBackward0(Node):
    def backward(self, grad):
        x, y = self.saved_tensors
        if not self.ndim or x._data.size == 0:
            return (grad,)
        has_zero = target_of(x._data).reduce.count_zeros(x._data) > 0
        if needs_grad((grad, x)):
            if has_zero:
                return (_cumprod_backward_recorded(grad, x, self.dim),)
            y = _result(self, y)               # the output, recorded: second derivatives flow through it
            return (flip(cumsum(flip(grad * y, self.dim), self.dim), self.dim) / x,)
        d = self.dim
        target = target_of(grad._data)
        g_block, moved = target.sort.rows(grad._data, d)
        x_block, _ = target.sort.rows(x._data, d)
        y_block, _ = target.sort.rows(y._data, d)
        if has_zero:
            dx = target.scan.cumprod_backward(g_block, x_block, y_block)
        else:       # the reversed running sum of g * y, over x: through Tensor ops on the blocks
            gy = Tensor._wrap(g_block) * Tensor._wrap(y_block)
            dx = (flip(cumsum(flip(gy, 1), 1), 1) / Tensor._wrap(x_block))._data
        return (Tensor._wrap(target.sort.restore(target.contiguous(dx), moved, d, x.ndim)),)


def _cumprod_backward_recorded(grad, x, dim):
    """dx_i = prod(x_j, j < i) * sum_{k >= i} g_k prod(x_j, i < j <= k), exact with zeros and
    made of differentiable ops (O(n^2) per row, as PyTorch's recorded rule): row i of the
    (n, n) matrix ``C`` is the running product of x with the entries j <= i set to 1."""
    x, g = x.movedim(dim, -1), grad.movedim(dim, -1)
    n = x.shape[-1]
    exclusive = cat([ones_like(x.narrow(-1, 0, 1)), cumprod(x.narrow(-1, 0, n - 1), -1)], -1)
    upto = ones(n, n, dtype=_dtype.bool, device=x.device).tril()       # [i, j]: j <= i, on x's device
    rows = where(upto, 1.0, x.unsqueeze(-2).expand(*x.shape[:-1], n, n))
    after = cumprod(rows, -1).triu()                                   # [i, k]: prod(x_j, i < j <= k), k >= i
    total = matmul(after, g.unsqueeze(-1)).squeeze(-1)
    return (exclusive * total).movedim(-1, dim)


@tensor_method()
def cumprod(input, dim=None, *, dtype=None, out=None, axis=None):
    """Running products along ``dim`` (integers and bools multiply in int64)."""
    dim = axis if dim is None else dim
    input, d, data = _scan(input, dim, dtype, True, "cumprod")
    result = record(CumprodBackward0, data, (input,), dim=d, ndim=input.ndim)
    if result.grad_fn is not None:
        result.grad_fn.save_for_backward(input, result.detach())
    if out is not None:
        from .out import write_out
        return write_out(out, result, "cumprod")
    return result


return_types.cummax = type("cummax", (_ValuesIndices,), {"__slots__": ()})
return_types.cummin = type("cummin", (_ValuesIndices,), {"__slots__": ()})


class _CumextremeBackward(Node):
    """The gradient of each running value, added at the position it came from."""

    def backward(self, grad):
        idx, = self.saved_tensors
        if not self.ndim:
            return (grad,)
        zeros = Tensor._wrap(target_of(grad._data).zeros(grad._data.shape, grad._data.dtype))
        return (_scatter(zeros, self.dim, idx, grad, "add", fresh=True),)


CummaxBackward0 = type("CummaxBackward0", (_CumextremeBackward,), {})
CumminBackward0 = type("CumminBackward0", (_CumextremeBackward,), {})


def _cumextreme(input, dim, smallest, name, node, result):
    d = _wrap_dim(dim, input.ndim)
    target = target_of(input._data)
    block, moved = target.sort.rows(input._data, d)
    values, indices = target.scan.cumextreme(block, smallest)
    restore = target.sort.restore
    values, indices = restore(values, moved, d, input.ndim), restore(indices, moved, d, input.ndim)
    idx = Tensor._wrap(indices)
    out = record(node, values, (input,), saved=(idx,), dim=d, ndim=input.ndim)
    return result(out, idx)


@tensor_method()
def cummax(input, dim):
    """Running maximum along ``dim`` and the index it was last taken from."""
    return _cumextreme(input, dim, False, "cummax", CummaxBackward0, return_types.cummax)


@tensor_method()
def cummin(input, dim):
    """Running minimum along ``dim`` and the index it was last taken from."""
    return _cumextreme(input, dim, True, "cummin", CumminBackward0, return_types.cummin)


@tensor_method()
def cumsum_(self, dim, *, dtype=None):
    """In-place ``cumsum``."""
    from .inplace import apply_inplace
    return apply_inplace(self, lambda old: cumsum(old, dim, dtype=dtype))


@tensor_method()
def cumprod_(self, dim, *, dtype=None):
    """In-place ``cumprod``."""
    from .inplace import apply_inplace
    return apply_inplace(self, lambda old: cumprod(old, dim, dtype=dtype))
