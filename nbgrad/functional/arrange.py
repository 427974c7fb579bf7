"""Rearranging ops: tril/triu, diag, diagonal (a view), trace, roll, rot90, tile,
repeat_interleave, fliplr/flipud.

They compose existing differentiable ops (where, index_select, flip, transpose, repeat,
index_put): gradients and double backward come from those. Where PyTorch names a node of
its own and the rule is one line (tril, triu, diagonal, roll), that node is recorded.
"""
import numbers

import numpy as np

from nbgrad.ops.targets import target_of

from .. import _dtype
from ..autograd.graph import Node
from ..autograd.grad_mode import no_grad
from ..factories import arange
from ..tensor import Tensor, _wrap_dim, make_view, record
from . import inplace, tensor_method
from .indexing import index_put, index_select
from .pointwise import where
from .shape import flip, movedim, repeat, reshape, transpose

__all__ = ["tril", "triu", "diag", "diagonal", "diag_embed", "trace", "roll", "rot90", "tile",
           "repeat_interleave", "fliplr", "flipud"]


# -- tril, triu --------------------------------------------------------------------------------------
def _triangle_mask(input, diagonal, lower):
    """Where ``column - row`` is at most (``lower``) or at least ``diagonal``: made by kernels on
    the input's device."""
    rows, cols = input.shape[-2], input.shape[-1]
    offset = arange(cols, device=input.device) - arange(rows, device=input.device).unsqueeze(1)
    return offset <= diagonal if lower else offset >= diagonal


def _zero_like_dtype(input):
    return False if input.dtype is _dtype.bool else 0


class TrilBackward0(Node):
    def backward(self, grad):
        return (tril(grad, self.diagonal),)


class TriuBackward0(Node):
    def backward(self, grad):
        return (triu(grad, self.diagonal),)


def _triangle(input, diagonal, lower):
    name = "tril" if lower else "triu"
    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    with no_grad():
        data = where(_triangle_mask(input, diagonal, lower), input.detach(), _zero_like_dtype(input))._data
    return record(TrilBackward0 if lower else TriuBackward0, data, (input,), diagonal=diagonal)


@tensor_method()
def tril(input, diagonal=0):
    """The lower triangle of the last two dims (on and below ``diagonal``), zeros above."""
    return _triangle(input, diagonal, True)


@tensor_method()
def triu(input, diagonal=0):
    """The upper triangle of the last two dims (on and above ``diagonal``), zeros below."""
    return _triangle(input, diagonal, False)


@tensor_method()
def tril_(self, diagonal=0):
    """In-place ``tril``."""
    return inplace.apply_inplace(self, lambda old: tril(old, diagonal))


@tensor_method()
def triu_(self, diagonal=0):
    """In-place ``triu``."""
    return inplace.apply_inplace(self, lambda old: triu(old, diagonal))


# -- diagonal, diag, trace ---------------------------------------------------------------------------
def _diagonal_geometry(shape, offset, d1, d2):
    r0, c0 = max(-offset, 0), max(offset, 0)
    length = max(min(shape[d1] - r0, shape[d2] - c0), 0)
    return r0, c0, length


class DiagonalBackward0(Node):
    """The gradient placed on the diagonal of zeros (``index_put``: differentiable)."""

    def backward(self, grad):
        return (_diagonal_scatter(grad, self.in_shape, self.offset, self.dim1, self.dim2),)


def _diagonal_scatter(values, shape, offset, d1, d2):
    r0, c0, length = _diagonal_geometry(shape, offset, d1, d2)
    zeros = Tensor._wrap(target_of(values._data).zeros(shape, values._data.dtype))
    moved = movedim(zeros, (d1, d2), (0, 1))
    steps = arange(length, device=values.device)
    out = index_put(moved, (steps + r0, steps + c0), movedim(values, -1, 0))
    return movedim(out, (0, 1), (d1, d2))


@tensor_method()
def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal of dims ``dim1``/``dim2`` (a view, appended as the last dim)."""
    n = input.ndim
    d1, d2 = _wrap_dim(dim1, n), _wrap_dim(dim2, n)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    data = input._data
    target = target_of(data)
    r0, c0, length = _diagonal_geometry(data.shape, offset, d1, d2)
    start = [slice(None)] * n
    start[d1], start[d2] = slice(min(r0, data.shape[d1]), None), slice(min(c0, data.shape[d2]), None)
    sub = target.slice(data, tuple(start))
    keep = [d for d in range(n) if d not in (d1, d2)]
    view = target.as_strided(                  # writeable when ``data`` is
        sub, tuple(data.shape[d] for d in keep) + (length,),
        tuple(data.strides[d] for d in keep) + (data.strides[d1] + data.strides[d2],))
    return make_view(input, view, DiagonalBackward0, lambda v: diagonal(v, offset, d1, d2), offset=offset,
                     dim1=d1, dim2=d2, in_shape=data.shape)


@tensor_method()
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Each last-dim vector of ``input`` as the diagonal of a square matrix in dims ``dim1``/``dim2``."""
    n = input.ndim + 1
    d1, d2 = _wrap_dim(dim1, n), _wrap_dim(dim2, n)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    size = input.shape[-1] + abs(offset) if input.ndim else 1 + abs(offset)
    rest = list(input.shape[:-1])
    shape = [0] * n
    for d in range(n):
        shape[d] = size if d in (d1, d2) else rest.pop(0)
    return _diagonal_scatter(input, tuple(shape), offset, d1, d2)


@tensor_method()
def diag(input, diagonal=0):
    """A vector's diagonal matrix, or a matrix's ``diagonal``-th diagonal (a copy)."""
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return input.diagonal(diagonal).clone()
    raise RuntimeError("diag(): Supports 1D or 2D tensors. Got " f"{input.ndim}D")


@tensor_method()
def trace(input):
    """The sum of a matrix's main diagonal."""
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return input.diagonal().sum()


# -- roll, rot90, flips ------------------------------------------------------------------------------
class RollBackward0(Node):
    def backward(self, grad):
        return (roll(grad, tuple(-s for s in self.shifts), self.dims),)


def _as_tuple(v):
    return (v,) if isinstance(v, (numbers.Integral, Tensor)) else tuple(v)


@tensor_method()
def roll(input, shifts, dims=None):
    """Elements shifted along ``dims`` (wrapping round); with no dims, along the flattened tensor."""
    shifts = tuple(int(s) for s in _as_tuple(shifts))
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:0")
        return roll(input.flatten(), shifts, 0).view(input.shape)
    if not input.ndim:
        raise IndexError(f"Dimension specified as {_as_tuple(dims)[0]} but tensor has no dimensions")
    dims = tuple(_wrap_dim(int(d), input.ndim) for d in _as_tuple(dims))
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    out = input.detach()
    with no_grad():
        for s, d in zip(shifts, dims):
            n = input._data.shape[d]
            if n:
                index = (arange(n, device=input.device) - s) % n
                out = index_select(out, d, index)
    data = out._data if out._data is not input._data else target_of(out._data).copy(out._data)
    return record(RollBackward0, data, (input,), shifts=shifts, dims=dims)


@tensor_method()
def rot90(input, k=1, dims=(0, 1)):
    """Rotated by 90 degrees ``k`` times, from the first of ``dims`` towards the second."""
    dims = tuple(dims)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if input.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {input.ndim}")
    d0, d1 = _wrap_dim(dims[0], input.ndim), _wrap_dim(dims[1], input.ndim)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and dim1 = {d1}")
    k %= 4
    if k == 1:
        return transpose(flip(input, d1), d0, d1)
    if k == 2:
        return flip(input, (d0, d1))
    if k == 3:
        return flip(transpose(input, d0, d1), d1)
    return input.clone()


@tensor_method()
def fliplr(input):
    """Reversed along dim 1 (left/right)."""
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, 1)


@tensor_method()
def flipud(input):
    """Reversed along dim 0 (up/down)."""
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, 0)


# -- tile, repeat_interleave -------------------------------------------------------------------------
@tensor_method()
def tile(input, *dims):
    """``repeat`` with ``dims`` padded by leading ones to the input's rank."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = (1,) * (input.ndim - len(dims)) + tuple(dims)
    return repeat(input, dims)


def _repeated_positions(like, n, counts):
    """0..n-1, each repeated ``counts`` times (an int or n host ints): planned on the host."""
    positions = np.repeat(np.arange(n, dtype=np.int64), counts)
    return Tensor._wrap(target_of(like._data).asarray(positions))


@tensor_method()
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each element (along ``dim``; flattened when None) repeated ``repeats`` times."""
    if repeats is None:                    # repeat_interleave(repeats): indices repeated
        counts = target_of(input._data).to_host(input._data).reshape(-1)
        return _repeated_positions(input, counts.size, counts)
    if dim is None:
        input, d = input.reshape(-1), 0
    elif not input.ndim:                      # PyTorch's text for a 0-d input given a dim
        raise IndexError("Dimension out of range (expected to be in range of [-1, 0], but got 1)")
    else:
        d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d] if input.ndim else 1
    if isinstance(repeats, Tensor):
        if repeats.ndim > 1:
            raise RuntimeError("repeats must be 0-dim or 1-dim tensor")
        counts = target_of(repeats._data).to_host(repeats._data).reshape(-1)
        if counts.size == 1:
            counts = counts[0]              # one count for every element
        elif counts.size != n:
            raise RuntimeError("repeats must have the same size as input along dim, but got repeats.size(0) = "
                               f"{counts.size} and input.size({d}) = {n}")
    else:
        counts = int(repeats)
    if np.any(counts < 0):
        raise RuntimeError("repeats can not be negative")
    index = _repeated_positions(input, n, counts)
    if not input.ndim:
        input = reshape(input, (1,))
    return index_select(input, d, index)
