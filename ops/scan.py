"""Scans along the last axis of a C-contiguous 2-D block: cumulative sum, product,
maximum and minimum, and the backward of the cumulative product; and sums and products
along the middle axis of a C-contiguous (outer, n, inner) block, a running row of
``inner`` accumulators (a loop that vectorizes, no transposed copies).

Sums and products accumulate in ``zero``'s type (float64 for floats, int64 for integers),
as PyTorch's CPU kernels do, and are stored in the output's dtype. Rows run in parallel
from ``PARALLEL_MIN`` elements on.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["cumulative", "cumulative_along", "cumextreme", "cumprod_backward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(inline="always", error_model="numpy")
def _scan_row(x, out, zero, product):
    acc = zero + 1 if product else zero
    for i in range(x.shape[0]):
        if product:
            acc = acc * x[i]
        else:
            acc = acc + x[i]
        out[i] = acc


@njit(**_JIT)
def _scan_serial(x, out, zero, product):
    for r in range(x.shape[0]):
        _scan_row(x[r], out[r], zero, product)


@njit(parallel=True, **_JIT)
def _scan_parallel(x, out, zero, product):
    for r in prange(x.shape[0]):
        _scan_row(x[r], out[r], zero, product)


def cumulative(x, out, product):
    """``out[r, i]`` = sum (or product) of ``x[r, :i + 1]``."""
    zero = np.float64(0) if out.dtype.kind == "f" else np.int64(0)
    if x.size >= PARALLEL_MIN and x.shape[0] > 1:
        with parallel_lock:
            _scan_parallel(x, out, zero, product)
    elif x.size:
        _scan_serial(x, out, zero, product)
    return out


_BLOCK = 256          # columns per task of the middle-axis scan


@njit(inline="always", error_model="numpy")
def _scan_columns(x, out, o, j0, j1, zero, product):
    acc = np.full(j1 - j0, zero + 1 if product else zero)
    for i in range(x.shape[1]):
        for j in range(j1 - j0):
            if product:
                acc[j] = acc[j] * x[o, i, j0 + j]
            else:
                acc[j] = acc[j] + x[o, i, j0 + j]
            out[o, i, j0 + j] = acc[j]


@njit(**_JIT)
def _along_serial(x, out, zero, product):
    for o in range(x.shape[0]):
        _scan_columns(x, out, o, 0, x.shape[2], zero, product)


@njit(parallel=True, **_JIT)
def _along_parallel(x, out, zero, product):
    blocks = (x.shape[2] + _BLOCK - 1) // _BLOCK
    for t in prange(x.shape[0] * blocks):
        o = t // blocks
        j0 = (t % blocks) * _BLOCK
        _scan_columns(x, out, o, j0, min(j0 + _BLOCK, x.shape[2]), zero, product)


def cumulative_along(x, out, product):
    """``out[o, i, j]`` = sum (or product) of ``x[o, :i + 1, j]``, for C-contiguous 3-D blocks."""
    zero = np.float64(0) if out.dtype.kind == "f" else np.int64(0)
    if x.size >= PARALLEL_MIN:
        with parallel_lock:
            _along_parallel(x, out, zero, product)
    elif x.size:
        _along_serial(x, out, zero, product)
    return out


@njit(**_JIT)
def cumextreme(x, smallest):
    """Running maximum (minimum) and the position it was last taken from; a NaN, once met,
    is the running value (PyTorch's rule: a NaN, or ``x >= best`` while best is no NaN, takes over)."""
    values = np.empty_like(x)
    indices = np.empty(x.shape, np.int64)
    for r in range(x.shape[0]):
        if x.shape[1] == 0:
            continue
        best = x[r, 0]
        at = 0
        for i in range(x.shape[1]):
            v = x[r, i]
            if v != v or (best == best and (v <= best if smallest else v >= best)):
                best = v
                at = i
            values[r, i] = best
            indices[r, i] = at
    return values, indices


@njit(**_JIT)
def cumprod_backward(g, x, y):
    """dx[i] = sum over k >= i of g[k] * prod(x[j] for j <= k, j != i), per row, exact with
    zeros: before the first zero z it is (sum over i <= k < z of g[k] y[k]) / x[i]; at z, a
    running product that skips x[z]; after z, 0."""
    out = np.zeros_like(x)
    n = x.shape[1]
    for r in range(x.shape[0]):
        z = n
        for i in range(n):
            if x[r, i] == 0:
                z = i
                break
        acc = 0.0
        for i in range(z - 1, -1, -1):
            acc += g[r, i] * y[r, i]
            out[r, i] = acc / x[r, i]
        if z < n:
            before = 1.0 if z == 0 else y[r, z - 1]
            run = before
            total = 0.0
            for k in range(z, n):
                if k > z:
                    run *= x[r, k]
                total += g[r, k] * run
            out[r, z] = total
    return out


guard(globals())
