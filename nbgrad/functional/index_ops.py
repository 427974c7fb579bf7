"""index_add, index_copy, index_fill, masked_scatter, put (and their in-place forms),
bincount and histc.

The index ops are the scatter family with the index laid out along one dim (PyTorch's
checks first, with its texts), so their gradients are scatter's and index_put's. The
counts run Numba kernels from ``ops.count``.
"""
import numpy as np

from nbgrad.ops.targets import target_of

from .. import _dtype
from ..tensor import Tensor, _wrap_dim
from . import inplace, tensor_method
from .indexing import index_put, scatter, scatter_add
from .pointwise import where

__all__ = ["index_add", "index_copy", "index_fill", "masked_scatter", "put", "bincount", "histc"]


def _check_index(name, input, dim, index, size, what="source"):
    if not isinstance(index, Tensor) or index.dtype is not _dtype.int64:
        raise IndexError(f"{name}_(): Expected dtype int64 for index.")
    if index.ndim > 1:
        raise IndexError(f"{name}_(): Index is supposed to be a vector, but got dim: {index.ndim} with type: Long "
                         f"and size: {list(index.shape)}")
    d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d] if input.ndim else 1
    flat = target_of(index._data).to_host(index._data).reshape(-1)      # checked and laid out on the host
    bad = flat[(flat < -n) | (flat >= n)]
    if bad.size:
        prefix = f"{name}_(): " if name == "index_copy" else ""
        raise (IndexError if name != "index_add" else RuntimeError)(
            f"{prefix}index {bad[0]} is out of bounds for dimension {d} with size {n}")
    return d, flat


def _along(input, flat, d, shape):
    """The host index ``flat`` laid out along dim ``d`` of ``shape`` on ``input``'s target, as
    scatter reads it."""
    view = [1] * max(len(shape), 1)
    view[d] = -1
    index = Tensor._wrap(target_of(input._data).asarray(flat.reshape(view)))
    return index.expand(*(shape or (1,))).contiguous().reshape(shape)


def _source_checks(name, input, d, flat, source):
    if source.dtype is not input.dtype:
        raise RuntimeError(f"{name}_(): self ({input.dtype.legacy}) and source ({source.dtype.legacy}) must have the "
                           "same scalar type")
    m = source._data.shape[d] if source.ndim else 1
    if flat.size != m:
        raise RuntimeError(f"{name}_(): Number of indices ({flat.size}) should be equal to source.size(dim): ({m}), "
                           f"for dim: {d}")


@tensor_method()
def index_add(input, dim, index, source, *, alpha=1):
    """``input`` with ``alpha * source`` slices added at ``index`` along ``dim`` (repeats add up)."""
    d, flat = _check_index("index_add", input, dim, index, None)
    _source_checks("index_add", input, d, flat, source)
    src = source if alpha == 1 else source * alpha
    return scatter_add(input, d, _along(input, flat % max(input.shape[d] if input.ndim else 1, 1), d, source.shape),
                       src)


@tensor_method()
def index_copy(input, dim, index, source):
    """``input`` with ``source``'s slices copied to ``index`` along ``dim``."""
    d, flat = _check_index("index_copy", input, dim, index, None)
    _source_checks("index_copy", input, d, flat, source)
    return scatter(input, d, _along(input, flat % max(input.shape[d] if input.ndim else 1, 1), d, source.shape),
                   source)


@tensor_method()
def index_fill(input, dim, index, value):
    """``input`` with the slices at ``index`` along ``dim`` set to ``value``."""
    d, flat = _check_index("index_fill", input, dim, index, None)
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        # a tensor value is differentiable: it goes where the filled positions are
        mask = index_fill(Tensor._wrap(target_of(input._data).zeros(input._data.shape, np.bool_)), d, index, True)
        return where(mask, value.to(input.dtype), input)
    shape = list(input.shape)
    if input.ndim:
        shape[d] = flat.size
    idx = _along(input, flat % max(input.shape[d] if input.ndim else 1, 1), d, tuple(shape))
    return scatter(input, d, idx, value=value)


def _mask_and_count(input, mask, source):
    if not isinstance(mask, Tensor) or mask.dtype is not _dtype.bool:
        dtype = mask.dtype.legacy if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with dtype {dtype}")
    if source.dtype is not input.dtype:
        raise RuntimeError(f"masked_scatter: expected self and source to have same dtypes but got"
                           f"{input.dtype.legacy} and {source.dtype.legacy}")
    mask = mask.expand(*input.shape) if mask.shape != input.shape else mask
    count = int(mask._data.sum())
    if source.numel() < count:
        raise RuntimeError("Number of elements of source < number of ones in mask")
    return mask, count


@tensor_method()
def masked_scatter(input, mask, source):
    """``input`` with the positions where ``mask`` is True filled, in order, from ``source``."""
    mask, count = _mask_and_count(input, mask, source)
    return index_put(input, (mask,), source.reshape(-1)[:count])


@tensor_method()
def put(input, index, source, accumulate=False):
    """``input`` (as a flat tensor) with ``source`` written (or added) at ``index``."""
    n = input.numel()
    if index.numel() != source.numel():
        raise IndexError(f"put_(): Expected source and index to have the same number of elements, but got "
                         f"source.numel() = {source.numel()}, index.numel() = {index.numel()}")
    flat = target_of(index._data).to_host(index._data).reshape(-1)      # checked on the host
    bad = flat[(flat < -n) | (flat >= n)]
    if bad.size:
        raise IndexError(f"out of range: tried to access index {bad[0]} on a tensor of {n} elements.")
    out = index_put(input.reshape(-1), (index.reshape(-1),), source.reshape(-1), accumulate)
    return out.reshape(input.shape)


def _inplace(functional, operand_names):
    def method(self, *args, **kwargs):
        operands = tuple(a for a in args if isinstance(a, Tensor))
        return inplace.apply_inplace(self, lambda old: functional(old, *args, **kwargs), operands)
    method.__name__ = method.__qualname__ = functional.__name__ + "_"
    method.__doc__ = f"In-place ``{functional.__name__}``."
    return tensor_method()(method)


index_add_ = _inplace(index_add, ("source",))
index_copy_ = _inplace(index_copy, ("source",))
index_fill_ = _inplace(index_fill, ())
masked_scatter_ = _inplace(masked_scatter, ("source",))
put_ = _inplace(put, ("source",))


@tensor_method()
def bincount(input, weights=None, minlength=0):
    """The count of each value 0..max of a 1-D non-negative integer tensor (or the sum of its weights)."""
    if input.dtype.kind != 1 or input.dtype is _dtype.bool:
        if input.dtype.is_floating_point:
            raise NotImplementedError(f"\"bincount_cpu\" not implemented for '{input.dtype.legacy}'")
    if input.ndim != 1:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    target = target_of(input._data)
    x = target.contiguous(target.astype(input._data, np.dtype(np.int64)))
    top, negative = target.count.max_value(x)
    if negative >= 0:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is not None and (weights.ndim != 1 or weights.numel() != input.numel()):
        raise RuntimeError("weights should be 1-d and have the same length as input")
    size = max(int(top) + 1 if x.size else 0, minlength)
    if weights is None:
        out = target.zeros(size, np.int64)
        w = target.zeros(0, np.int64)
    else:
        dtype = np.dtype(np.float64 if weights.dtype is not _dtype.float32 else np.float32)
        out = target.zeros(size, dtype)
        w = target.contiguous(target.astype(weights._data, dtype))
    target.count.bincount(x, w, out)
    return Tensor._wrap(out)


@tensor_method()
def histc(input, bins=100, min=0, max=0):
    """Counts in ``bins`` equal bins over [min, max] (the data's range when both are 0); floating."""
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"histogram_cpu\" not implemented for '{input.dtype.legacy}'")
    if bins <= 0:
        raise RuntimeError("torch.histc: bins must be > 0, but got " f"{bins} for bins")
    lo, hi = float(min), float(max)
    target = target_of(input._data)
    x = target.reshape(target.contiguous(input._data), (-1,))
    if lo == hi and x.size:
        lo, hi = float(input.detach().min()), float(input.detach().max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if lo > hi:
        raise RuntimeError("torch.histc: max must be larger than min")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise RuntimeError(f"torch.histc: range of [{lo}, {hi}] is not finite")
    out = target.zeros(int(bins), input._data.dtype)
    target.count.histc(x, out, lo, hi)
    return Tensor._wrap(out)
