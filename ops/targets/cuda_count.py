"""The ``count`` family on CUDA: ``bincount`` and ``histc`` with atomic adds, and the largest
value with the first negative position (``max_value``) by atomic max/min. Rules as
``ops/count.py``: every value is checked where it indexes (out of range: not counted); histc
skips NaNs and values outside ``[lo, hi]``."""
import numpy as np
from numba import cuda

__all__ = ["Count"]

_THREADS = 32


@cuda.jit
def _max_value_kernel(x, n, found):
    """``found[0]``: max(0, largest value); ``found[1]``: the first negative position (``n``: none)."""
    i = cuda.grid(1)
    if i >= n:
        return
    v = x[i]
    if v < 0:
        cuda.atomic.min(found, 1, i)
    else:
        cuda.atomic.max(found, 0, v)


@cuda.jit
def _bincount_kernel(x, n, weights, weighted, out, size):
    i = cuda.grid(1)
    if i >= n:
        return
    v = x[i]
    if 0 <= v < size:
        if weighted:
            cuda.atomic.add(out, v, weights[i])
        else:
            cuda.atomic.add(out, v, 1)


@cuda.jit
def _histc_kernel(x, n, out, bins, lo, hi):
    i = cuda.grid(1)
    if i >= n:
        return
    v = x[i]
    if v >= lo and v <= hi:
        width = hi - lo
        b = int((v - lo) * bins / width) if width > 0 else 0
        if b >= bins:
            b = bins - 1
        if b >= 0:
            cuda.atomic.add(out, b, 1)


def _grid(n):
    threads = max(1, min(_THREADS, n))
    return -(-n // threads), threads


def _flat(arr):
    return arr.buf[arr.offset:arr.offset + max(arr.size, 1)]


class Count:
    """The CPU's ``ops/count.py`` members over C-contiguous 1-D ``DeviceArray`` s."""

    def __init__(self, target):
        self._t = target

    def max_value(self, x):
        """(largest value or 0, position of a negative value or -1): read back, as the output's
        size depends on it (PyTorch's CUDA bincount synchronizes there too)."""
        n = x.size
        if n == 0:
            return 0, -1
        found = cuda.to_device(np.array([0, n], np.int64))
        _max_value_kernel[_grid(n)](_flat(x), n, found)
        top, negative = (int(v) for v in found.copy_to_host())
        return top, (negative if negative < n else -1)

    def bincount(self, x, weights, out):
        n = x.size
        if n and out.size:
            _bincount_kernel[_grid(n)](_flat(x), n, _flat(weights), weights.size > 0, _flat(out), out.size)
        return out

    def histc(self, x, out, lo, hi):
        n = x.size
        if n:
            _histc_kernel[_grid(n)](_flat(x), n, _flat(out), out.size, float(lo), float(hi))
        return out
