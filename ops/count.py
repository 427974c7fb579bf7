"""Counting kernels: ``bincount`` and ``histc``.

Every value is checked where it is used: a negative value stops ``bincount`` (its
position is returned, the caller raises PyTorch's error), and ``histc`` skips values
outside ``[lo, hi]`` and NaNs, as PyTorch does.
"""
from numba import njit

from ._cache import guard

__all__ = ["bincount", "histc", "max_value"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def max_value(x):
    """The largest value of the 1-D integer ``x`` and the position of a negative one (-1: none)."""
    top = 0
    for i in range(x.shape[0]):
        if x[i] < 0:
            return top, i
        if x[i] > top:
            top = x[i]
    return top, -1


@njit(**_JIT)
def bincount(x, weights, out):
    """``out[v] += weights[i]`` (or 1 when ``weights`` is empty) for each value ``v = x[i]``."""
    weighted = weights.shape[0] > 0
    for i in range(x.shape[0]):
        v = x[i]
        if 0 <= v < out.shape[0]:
            out[v] += weights[i] if weighted else 1


@njit(**_JIT)
def histc(x, out, lo, hi):
    """Counts of ``x`` in ``out.shape[0]`` equal bins over ``[lo, hi]`` (``hi`` in the last bin)."""
    bins = out.shape[0]
    width = hi - lo
    for i in range(x.shape[0]):
        v = x[i]
        if v >= lo and v <= hi:
            b = int((v - lo) * bins / width) if width > 0 else 0
            if b >= bins:
                b = bins - 1
            out[b] += 1


guard(globals())
