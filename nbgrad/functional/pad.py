"""``nn.functional.pad`` and ``nn.functional.one_hot``.

Constant padding concatenates blocks of the fill value (negative pads narrow); reflect,
replicate and circular padding read the input through an index along each padded dim
(``index_select``), so every mode is differentiable through existing ops.
"""
from .. import _dtype
from ..factories import arange, full
from ..tensor import Tensor
from .indexing import index_select
from .pointwise import where
from .shape import cat, narrow

__all__ = ["pad", "one_hot"]

_SIZES = {2: (2, 3), 4: (3, 4), 6: (4, 5)}     # non-constant modes: pad length -> input ranks


def _pairs(pad, ndim):
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) > 2 * ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {ndim}")
    return [(ndim - 1 - k, pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)]


def _constant(input, pairs, value):
    out = input
    for d, left, right in pairs:
        if left < 0:
            out = narrow(out, d, -left, out.shape[d] + left)
        if right < 0:
            out = narrow(out, d, 0, out.shape[d] + right)
        parts = []
        for n in (left, right):
            shape = list(out.shape)
            shape[d] = max(n, 0)
            parts.append(full(tuple(shape), value, dtype=input.dtype))
        if left > 0 or right > 0:
            out = cat([parts[0], out, parts[1]], d)
    return out if out is not input else input.clone()


def _index(like, mode, n, left, right, d, shape):
    i = arange(-left, max(n + right, -left), device=like.device)
    if mode == "reflect":
        if left >= n or right >= n:
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({left}, {right}) at dimension {d} of input {list(shape)}")
        i = i.abs()
        i = where(i >= n, 2 * (n - 1) - i, i)
    elif mode == "replicate":
        if n == 0:
            raise RuntimeError("padding size should be less than the corresponding input dimension")
        i = i.clamp(0, n - 1)
    else:
        if left > n or right > n:
            raise RuntimeError("Padding value causes wrapping around more than once.")
        i = i % n
    return i


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (left_last, right_last, left_prev, ...)``."""
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    pairs = _pairs(pad, input.ndim)
    if mode == "constant":
        return _constant(input, pairs, 0 if value is None else value)
    if value is not None and value != 0:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    ranks = _SIZES.get(len(pad))
    if ranks is None or input.ndim not in ranks:
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    out = input
    for d, left, right in pairs:
        out = index_select(out, d, _index(input, mode, input.shape[d], left, right, d, input.shape))
    return out


def one_hot(tensor, num_classes=-1):
    """int64 rows with a 1 at each value of ``tensor``, ``num_classes`` long (max + 1 by default)."""
    if not isinstance(tensor, Tensor) or tensor.dtype is not _dtype.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    data = tensor._data
    if data.size and data.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        if data.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(data.max()) + 1
    elif data.size and data.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return (tensor.detach().unsqueeze(-1) == arange(num_classes, device=tensor.device)).to(_dtype.int64)
