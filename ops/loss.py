"""Negative log-likelihood loss kernels, on raw arrays.

The input is seen as ``(N, C, H, W)`` (a 1-D input is ``(1, C, 1, 1)``, a 2-D one
``(N, C, 1, 1)``; adding unit dims never copies, so any strides are read in place), the
target as ``N*H*W`` class indices in C order. The loss of one position is
``-weight[t] * x[n, t, h, w]``, or 0 where ``t == ignore_index``; a missing ``weight`` is
passed as ones, so that one loop serves both cases.

The forward reads one element per position, so it runs serially. The backward writes a
dense gradient that is zero except at the target positions: each sample's slab is zeroed
and its few entries set in the same pass (one write of the array, in parallel over the
samples when it is large), instead of a separate zero-fill and scatter.

Both check every target as they read it (the backward too: the saved target can be
changed in place through ``.data`` without a version bump), and neither reads nor writes
through one out of range: they return its position and the caller raises PyTorch's error.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["nll_forward", "nll_backward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _forward(out, x, target, weight, ignore_index):
    """``out[i]`` (flat, C order over n, h, w) = the loss of position ``i``; returns the
    sum of the losses and of their weights (in float64), and the first position whose
    target is out of range (-1 if none), where the loop stops."""
    n_, c_, h_, w_ = x.shape
    total = 0.0
    weights = 0.0
    i = 0
    for n in range(n_):
        for h in range(h_):
            for w in range(w_):
                t = target[i]
                if t == ignore_index:
                    out[i] = 0.0
                else:
                    if t < 0 or t >= c_:
                        return total, weights, i
                    wt = weight[t]
                    v = -x[n, t, h, w] * wt
                    out[i] = v
                    total += v
                    weights += wt
                i += 1
    return total, weights, -1


@njit(inline="always", error_model="numpy")
def _backward_sample(n, out, target, weight, grad, per_position, ignore_index):
    """Sample ``n``'s slab; returns the first of its positions whose target is out of range
    (``target.size`` if none)."""
    _, c_, h_, w_ = out.shape
    k_ = h_ * w_
    slab = out[n].reshape(-1)          # out is C-contiguous: sample n is one run
    for j in range(slab.shape[0]):
        slab[j] = 0.0
    for k in range(k_):
        i = n * k_ + k
        t = target[i]
        if t != ignore_index:
            if t < 0 or t >= c_:
                return i
            slab[t * k_ + k] = weight[t] * -grad[i if per_position else 0]
    return target.shape[0]


@njit(**_JIT)
def _backward_serial(out, target, weight, grad, per_position, ignore_index):
    for n in range(out.shape[0]):
        first = _backward_sample(n, out, target, weight, grad, per_position, ignore_index)
        if first < target.shape[0]:
            return first
    return target.shape[0]


@njit(parallel=True, **_JIT)
def _backward_parallel(out, target, weight, grad, per_position, ignore_index):
    first = target.shape[0]
    for n in prange(out.shape[0]):
        first = min(first, _backward_sample(n, out, target, weight, grad, per_position, ignore_index))
    return first


def _as_4d(x):
    """``x`` (1-D ``(C,)``, 2-D ``(N, C)`` or 4-D) as an ``(N, C, H, W)`` view."""
    if x.ndim == 1:
        return x[None, :, None, None]
    if x.ndim == 2:
        return x[:, :, None, None]
    return x


def _weights(weight, n_classes, dtype):
    return np.ones(n_classes, dtype) if weight is None else np.ascontiguousarray(weight, dtype)


def _operands(shape, target, weight, dtype):
    """The flat target and the weights for an input of ``shape``, with PyTorch's errors for
    sizes that do not fit (in backward: a saved target or weight replaced through ``.data``)."""
    c = shape[0] if len(shape) == 1 else shape[1]
    positions = 1 if len(shape) == 1 else shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1)
    if target.size != positions:
        if len(shape) == 4:
            raise RuntimeError(f"size mismatch (got input: {list(shape)} , target: {list(target.shape)}")
        raise RuntimeError(f"size mismatch (got input: {list(shape)}, target: {list(target.shape)})")
    if weight is not None and weight.size != c:
        raise RuntimeError("weight tensor should be defined either for all or no classes")
    return np.ascontiguousarray(target, np.int64).reshape(-1), _weights(weight, c, dtype)


def nll_forward(x, target, weight, ignore_index):
    """Per-position losses of ``x`` (1-D, 2-D or 4-D, any strides), shaped as ``target``,
    with their sum and the sum of their weights (numbers of ``x``'s dtype). A target out
    of range raises PyTorch's IndexError."""
    flat_target, weights = _operands(x.shape, target, weight, x.dtype)
    out = np.empty(target.shape, x.dtype)
    total, weight_sum, bad = _forward(out.reshape(-1), _as_4d(x), flat_target, weights, ignore_index)
    if bad >= 0:
        raise IndexError(f"Target {flat_target[bad]} is out of bounds.")
    return out, x.dtype.type(total), x.dtype.type(weight_sum)


def nll_backward(shape, dtype, target, weight, grad, ignore_index):
    """The gradient (C-contiguous, of ``shape``) for ``grad``: one number per position
    (``target``'s shape, reduction 'none'), or one for all, already divided by the total
    weight for 'mean'. Each target position gets ``-weight[t] * grad``, the rest 0."""
    out = np.empty(shape, dtype)
    if out.size == 0:
        return out
    out4 = _as_4d(out)
    flat_target, weights = _operands(shape, target, weight, dtype)
    flat_grad = np.ascontiguousarray(grad, dtype).reshape(-1)
    if flat_grad.size not in (1, flat_target.size):
        raise RuntimeError(f"Expected a gradient of 1 or {flat_target.size} elements, but got {flat_grad.size}")
    args = (out4, flat_target, weights, flat_grad, flat_grad.size != 1, ignore_index)
    if out.size >= PARALLEL_MIN and out4.shape[0] > 1:
        with parallel_lock:
            first = _backward_parallel(*args)
    else:
        first = _backward_serial(*args)
    if first < flat_target.size:
        raise IndexError(f"Target {flat_target[first]} is out of bounds.")
    return out


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
