"""Sorting and order statistics: sort, argsort, msort, topk, kthvalue, median, mode, unique.

The order comes from ``ops.sort`` (a stable merge sort, NaN largest). The values are the
input read at the chosen positions, and every differentiable result records a node whose
backward puts the gradient back at those positions (a scatter-add into zeros, itself
differentiable), named as PyTorch names it.
"""
import numpy as np

from nbgrad.ops.targets import target_of

from ..autograd.graph import Node
from ..factories import arange
from ..tensor import Tensor, _wrap_dim, record
from . import tensor_method
from .indexing import _scatter
from .pointwise import where
from .reduction import _ValuesIndices, return_types

__all__ = ["sort", "argsort", "msort", "topk", "kthvalue", "median", "nanmedian", "mode", "unique",
           "unique_consecutive"]


def _named(name):
    cls = type(name, (_ValuesIndices,), {"__slots__": ()})
    setattr(return_types, name, cls)
    return cls


_SORT, _TOPK, _KTH, _MEDIAN, _MODE = (_named(n) for n in ("sort", "topk", "kthvalue", "median", "mode"))
_NANMEDIAN = _named("nanmedian")


class _PickedBackward(Node):
    """The gradient of values read from the input at ``indices`` along ``dim``: scattered back
    (added, so positions picked twice get both) into zeros of the input's shape."""

    def backward(self, grad):
        idx, = self.saved_tensors
        if not self.keepdim:
            grad, idx = grad.unsqueeze(self.dim), idx.unsqueeze(self.dim)
        if not self.in_shape:
            return (grad.reshape(()),)
        zeros = Tensor._wrap(target_of(grad._data).zeros(self.in_shape, grad._data.dtype))
        return (_scatter(zeros, self.dim, idx, grad, "add", fresh=True),)


SortBackward0 = type("SortBackward0", (_PickedBackward,), {})
SortBackward1 = type("SortBackward1", (_PickedBackward,), {})      # sort(..., stable=...)
TopkBackward0 = type("TopkBackward0", (_PickedBackward,), {})
KthvalueBackward0 = type("KthvalueBackward0", (_PickedBackward,), {})
MedianBackward1 = type("MedianBackward1", (_PickedBackward,), {})
NanmedianBackward1 = type("NanmedianBackward1", (_PickedBackward,), {})
ModeBackward0 = type("ModeBackward0", (_PickedBackward,), {})


def _check_dim(dim, ndim, name):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}(): argument 'dim' must be int, not {type(dim).__name__}")
    return _wrap_dim(int(dim), ndim)


def _sorted_rows(input, dim, descending):
    """(values, order) of ``input`` sorted along ``dim``, both as 2-D blocks with ``dim`` last,
    and the moved shape to restore them."""
    sort = target_of(input._data).sort
    block, moved = sort.rows(input._data, dim)
    values, order = sort.argsort_rows(block, bool(descending))
    return values, order, moved


def _picked(node, input, values, indices, dim, keepdim, result):
    out = record(node, values, (input,), saved=(Tensor._wrap(indices),), dim=dim, keepdim=keepdim,
                 in_shape=input._data.shape)
    return result(out, Tensor._wrap(indices))


@tensor_method()
def sort(input, dim=-1, descending=False, stable=None):
    """Values and indices along ``dim``; always stable (ties keep their order, NaN largest)."""
    if isinstance(dim, bool):              # sort(input, stable=..., ...) written positionally
        raise TypeError("sort(): argument 'dim' must be int, not bool")
    d = _check_dim(dim, input.ndim, "sort")
    values, order, moved = _sorted_rows(input, d, descending)
    restore = target_of(input._data).sort.restore
    values, order = restore(values, moved, d, input.ndim), restore(order, moved, d, input.ndim)
    return _picked(SortBackward0 if stable is None else SortBackward1, input, values, order, d, True, _SORT)


@tensor_method()
def argsort(input, dim=-1, descending=False, stable=None):
    """The indices that sort ``input`` along ``dim`` (``sort(...).indices``)."""
    return sort(input, dim, descending, stable).indices


@tensor_method()
def msort(input):
    """``input`` sorted along its first dim (values only)."""
    return sort(input, 0).values


@tensor_method()
def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (``largest=False``: smallest) along ``dim``, in sorted order."""
    d = _check_dim(dim, input.ndim, "topk")
    size = input._data.shape[d] if input.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError("selected index k out of range")
    target = target_of(input._data)
    block, moved = target.sort.rows(input._data, d)
    if k <= 64 and k * 8 <= size:           # a selection: about one comparison per element
        values, order = target.sort.topk_rows(block, k, bool(largest))
    else:
        values, order = target.sort.argsort_rows(block, bool(largest))
        first_k = (slice(None), slice(None, k))
        values, order = (target.contiguous(target.slice(values, first_k)),
                         target.contiguous(target.slice(order, first_k)))
    moved = moved[:-1] + (k,)
    restore = target.sort.restore
    values, order = restore(values, moved, d, input.ndim), restore(order, moved, d, input.ndim)
    return _picked(TopkBackward0, input, values, order, d, True, _TOPK)


def _select(input, dim, keepdim, pick, node, result, name):
    """One value per row along ``dim``: ``pick(target, sorted_values, order)`` gives the
    chosen values and indices of the block's rows."""
    d = _check_dim(dim, input.ndim, name)
    if input.ndim and input._data.shape[d] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    values, order, moved = _sorted_rows(input, d, False)
    target = target_of(input._data)
    v, i = pick(target, values, order)
    shape = moved[:-1]
    if keepdim and input.ndim:
        shape = tuple(input._data.shape[:d]) + (1,) + tuple(input._data.shape[d + 1:])
    return _picked(node, input, target.reshape(v, shape), target.reshape(i, shape), d, keepdim or not input.ndim, result)


@tensor_method()
def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest value along ``dim`` (1-based) and its index."""
    d = _check_dim(dim, input.ndim, "kthvalue")
    size = input._data.shape[d] if input.ndim else 1
    if size == 0:
        raise IndexError(f"kthvalue(): Expected reduction dim {d} to have non-zero size.")
    if not 1 <= k <= size:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    column = (slice(None), k - 1)
    return _select(input, d, keepdim, lambda t, v, o: (t.copy(t.slice(v, column)), t.copy(t.slice(o, column))),
                   KthvalueBackward0, _KTH, "kthvalue")


def _median_pick(skip_nan):
    def pick(target, v, o):
        # which column each sorted row's median is in: planned on the host from where its NaNs are
        host = target.to_host(v)
        nan = host != host
        if skip_nan:      # NaNs sort last: the median of the numbers before them (all NaN: NaN)
            counts = v.shape[1] - nan.sum(axis=1)
            at = np.where(counts > 0, (counts - 1) // 2, 0)
        else:             # a NaN anywhere is the median: the first NaN in order
            at = np.where(nan.any(axis=1), nan.argmax(axis=1), (v.shape[1] - 1) // 2)
        at = target.asarray(at.astype(np.int64).reshape(-1, 1))
        picked = []
        for src in (v, o):
            out = target.empty((v.shape[0], 1), src.dtype)
            target.index.gather_dim(out, src, 1, at)
            picked.append(target.reshape(out, (v.shape[0],)))
        return tuple(picked)
    return pick


class _EvenlyBackward(Node):
    """The whole-tensor median's gradient, as PyTorch's ``evenly_distribute_backward``:
    shared among every element equal to the median (every NaN, when it is NaN)."""

    def backward(self, grad):
        x, y = self.saved_tensors
        mask = x.isnan() if y.isnan().item() else x == y
        return (where(mask, grad / mask.sum(), 0.0),)


MedianBackward0 = type("MedianBackward0", (_EvenlyBackward,), {})
NanmedianBackward0 = type("NanmedianBackward0", (_EvenlyBackward,), {})


def _median(input, dim, keepdim, skip_nan, name):
    node, result = (NanmedianBackward1, _NANMEDIAN) if skip_nan else (MedianBackward1, _MEDIAN)
    if dim is None:
        if input._data.size == 0:
            return Tensor._wrap(target_of(input._data).full((), np.nan, input._data.dtype))
        values, _ = _median_pick(skip_nan)(target_of(input._data), *_sorted_rows(input.detach().reshape(-1), 0, False)[:2])
        value = Tensor._wrap(target_of(values).reshape(values, ()))
        return record(NanmedianBackward0 if skip_nan else MedianBackward0, value._data, (input,),
                      saved=(input, value))
    return _select(input, dim, keepdim, _median_pick(skip_nan), node, result, name)


@tensor_method()
def median(input, dim=None, keepdim=False):
    """The lower median (of the two middle values, the smaller); NaN if the row has a NaN."""
    return _median(input, dim, keepdim, False, "median")


@tensor_method()
def nanmedian(input, dim=None, keepdim=False):
    """The lower median of the values that are not NaN."""
    return _median(input, dim, keepdim, True, "nanmedian")


@tensor_method()
def mode(input, dim=-1, keepdim=False):
    """The most frequent value along ``dim`` (the smallest of ties) and its last index."""
    return _select(input, dim, keepdim, lambda t, v, o: t.sort.mode_rows(v, o), ModeBackward0, _MODE, "mode")


def _unique_flat(input, sorted_, consecutive):
    target = target_of(input._data)
    flat = target.reshape(target.contiguous(input._data), (-1,))
    if consecutive:
        order = arange(flat.size, device=input.device)._data
        values = flat
    else:
        values, order = target.sort.argsort_rows(target.reshape(flat, (1, -1)), False)
        values, order = target.reshape(values, (-1,)), target.reshape(order, (-1,))
    return target.sort.unique_runs(values, order, consecutive)


def _unique_result(input, firsts, inverse, counts, return_inverse, return_counts):
    out = [Tensor._wrap(firsts)]
    if return_inverse:
        out.append(Tensor._wrap(target_of(inverse).reshape(inverse, input._data.shape)))
    if return_counts:
        out.append(Tensor._wrap(counts))
    return out[0] if len(out) == 1 else tuple(out)


def _unique_dim(input, dim, consecutive, return_inverse, return_counts, name):
    d = _check_dim(dim, input.ndim, name)
    if any(n == 0 for k, n in enumerate(input._data.shape) if k != d):
        raise RuntimeError("There are 0 sized dimensions, and they aren't selected, so unique cannot be applied")
    target = target_of(input._data)
    data = target.reshape(input._data, input._data.shape or (1,))
    moved = target.permute(data, (d,) + tuple(k for k in range(data.ndim) if k != d))
    block = target.reshape(target.contiguous(moved), (moved.shape[0], int(np.prod(moved.shape[1:], dtype=np.int64))))
    if block.shape[0] == 0:
        firsts, inverse, counts = (target.zeros(0, np.int64),) * 3
    else:
        firsts, inverse, counts = target.sort.unique_slices(block, consecutive)
    values = Tensor._wrap(data).index_select(d, Tensor._wrap(firsts))
    out = [values]
    if return_inverse:
        out.append(Tensor._wrap(inverse))
    if return_counts:
        out.append(Tensor._wrap(counts))
    return out[0] if len(out) == 1 else tuple(out)


@tensor_method()
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values (or slices along ``dim``), ascending (always sorted, which
    ``sorted=False`` allows too)."""
    if dim is not None:
        return _unique_dim(input, dim, False, return_inverse, return_counts, "unique")
    firsts, inverse, counts = _unique_flat(input, sorted, False)
    return _unique_result(input, firsts, inverse, counts, return_inverse, return_counts)


@tensor_method()
def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """Each run of equal consecutive values (or slices along ``dim``) kept once."""
    if dim is not None:
        return _unique_dim(input, dim, True, return_inverse, return_counts, "unique_consecutive")
    firsts, inverse, counts = _unique_flat(input, True, True)
    return _unique_result(input, firsts, inverse, counts, return_inverse, return_counts)
