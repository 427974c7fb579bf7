"""Cross-entropy (log_softmax then nll_loss over class indices) fused into one pass each
way, on raw ``(N, C)`` arrays, C-contiguous.

Separately, log_softmax writes an ``(N, C)`` output, nll_loss's backward writes a dense
gradient that is zero but at the targets, and log_softmax's backward reads both and writes
the input's gradient: four passes over ``N*C`` values besides the input's. Fused, the forward
reads the input once and keeps two numbers a row (its maximum ``m`` and ``ls = log(sum(exp(x
- m)))``), and the backward reads the input once and writes its gradient, ``g * (exp(y) -
onehot)`` with ``y = (x - m) - ls`` as log_softmax computes it: the same values as the two
steps (to a rounding).

Each loop over a row vectorizes (``vmath``): ``exp`` in the input's dtype, the maximum as
LLVM's NaN-propagating maximum, the sum of exps in the input's dtype (as PyTorch's
log_softmax) in a function of its own whose adds only may be reassociated. Rows run in parallel from ``PARALLEL_MIN`` elements. A target
out of range is never read through: the kernels return its row, the caller raises PyTorch's
error.
"""
import math

import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock
from .vmath import exp, fma, maximum

__all__ = ["forward", "backward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(fastmath={"reassoc"}, **_JIT)
def _sum_exp(xr, m):
    s = xr.dtype.type(0.0)
    for j in range(xr.shape[0]):
        s += exp(xr[j] - m)
    return s


@njit(inline="always", error_model="numpy")
def _forward_row(x, r, target, ignore_index, ms, lss, losses):
    """Row ``r``'s maximum, log-sum-exp and loss; False if its target is out of range."""
    xr = x[r]
    m = xr.dtype.type(-math.inf)
    for j in range(xr.shape[0]):
        m = maximum(m, xr[j])
    ls = xr.dtype.type(math.log(_sum_exp(xr, m)))
    ms[r], lss[r] = m, ls
    t = target[r]
    if t == ignore_index:
        losses[r] = 0.0
        return True
    if t < 0 or t >= xr.shape[0]:
        return False
    losses[r] = -((xr[t] - m) - ls)
    return True


@njit(**_JIT)
def _forward_serial(x, target, ignore_index, ms, lss, losses):
    for r in range(x.shape[0]):
        if not _forward_row(x, r, target, ignore_index, ms, lss, losses):
            return r
    return -1


@njit(parallel=True, **_JIT)
def _forward_parallel(x, target, ignore_index, ms, lss, losses):
    bad = x.shape[0]
    for r in prange(x.shape[0]):
        if not _forward_row(x, r, target, ignore_index, ms, lss, losses):
            bad = min(bad, r)
    return bad if bad < x.shape[0] else -1


@njit(inline="always", error_model="numpy")
def _backward_row(out, x, r, target, ignore_index, ms, lss, grad, per_row):
    """Row ``r`` of the gradient; False if its target is out of range."""
    xr, gxr = x[r], out[r]
    t = target[r]
    if t == ignore_index:
        for j in range(xr.shape[0]):
            gxr[j] = 0.0
        return True
    if t < 0 or t >= xr.shape[0]:
        return False
    g = grad[r] if per_row else grad[0]
    m, ls = ms[r], lss[r]
    for j in range(xr.shape[0]):
        gxr[j] = exp((xr[j] - m) - ls) * g
    gxr[t] = fma(exp((xr[t] - m) - ls), g, -g)
    return True


@njit(**_JIT)
def _backward_serial(out, x, target, ignore_index, ms, lss, grad, per_row):
    for r in range(x.shape[0]):
        if not _backward_row(out, x, r, target, ignore_index, ms, lss, grad, per_row):
            return r
    return -1


@njit(parallel=True, **_JIT)
def _backward_parallel(out, x, target, ignore_index, ms, lss, grad, per_row):
    bad = x.shape[0]
    for r in prange(x.shape[0]):
        if not _backward_row(out, x, r, target, ignore_index, ms, lss, grad, per_row):
            bad = min(bad, r)
    return bad if bad < x.shape[0] else -1


@njit(**_JIT)
def _total(losses, target, ignore_index):
    """The losses' sum in float64, in row order (as nll_loss sums), and the rows counted."""
    total, count = 0.0, 0
    for r in range(losses.shape[0]):
        if target[r] != ignore_index:
            total += losses[r]
            count += 1
    return total, count


def _launch(serial, parallel, x, args):
    if x.size >= PARALLEL_MIN and x.shape[0] > 1:
        with parallel_lock:
            return parallel(*args)
    return serial(*args)


def forward(x, target, ignore_index):
    """Per-row losses of ``x`` (``(N, C)``, C-contiguous) for class indices ``target``
    (``(N,)``), their sum and the count of rows not ignored (numbers of ``x``'s dtype),
    and what ``backward`` needs (each row's maximum and log-sum-exp)."""
    target = np.ascontiguousarray(target, np.int64).reshape(-1)
    n = x.shape[0]
    ms, lss, losses = np.empty(n, x.dtype), np.empty(n, x.dtype), np.empty(n, x.dtype)
    bad = _launch(_forward_serial, _forward_parallel, x, (x, target, ignore_index, ms, lss, losses))
    if bad >= 0:
        raise IndexError(f"Target {target[bad]} is out of bounds.")
    total, count = _total(losses, target, ignore_index)
    return losses, x.dtype.type(total), x.dtype.type(count), (ms, lss)


def backward(x, target, ignore_index, saved, grad):
    """The gradient of ``x`` for ``grad``: one number per row (reduction 'none') or one for
    all (already divided by the count for 'mean')."""
    target = np.ascontiguousarray(target, np.int64).reshape(-1)
    out = np.empty(x.shape, x.dtype)
    flat_grad = np.ascontiguousarray(grad, x.dtype).reshape(-1)
    ms, lss = saved
    bad = _launch(_backward_serial, _backward_parallel, x,
                  (out, x, target, ignore_index, ms, lss, flat_grad, flat_grad.size != 1))
    if bad >= 0:
        raise IndexError(f"Target {target[bad]} is out of bounds.")
    return out


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
