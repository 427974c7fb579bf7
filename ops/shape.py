"""Shape kernels that move data: ``flip``.

Views (reshape, transpose, expand, slices) need no kernel: a NumPy view is metadata
over the same memory. Concatenation, stacking and repetition are copies into slices of
the output, which the elementwise ``copy`` kernel does for any strides. Only ``flip``
reads backwards, which that kernel (it takes non-negative strides) cannot.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["flip"]


@njit(inline='always')
def _flip_row(out, x, shape, flipped, r):
    """Row ``r`` (all dims but the last fixed) of ``out``, read from its mirror image in ``x``.
    (``r`` is never assigned to, nor is a copy of it: Numba refuses that in a ``prange`` body.)"""
    nd = shape.shape[0]
    inner = shape[nd - 1]
    src = 0
    below = 1           # rows per step of dim d
    stride = inner      # elements per step of dim d
    for d in range(nd - 2, -1, -1):
        q = (r // below) % shape[d]
        if flipped[d]:
            q = shape[d] - 1 - q
        src += q * stride
        below *= shape[d]
        stride *= shape[d]
    o = r * inner
    if flipped[nd - 1]:
        for j in range(inner):
            out[o + j] = x[src + inner - 1 - j]
    else:
        for j in range(inner):
            out[o + j] = x[src + j]


@njit(cache=True, nogil=True)
def flip_serial(out, x, shape, flipped):
    for r in range(out.shape[0] // shape[shape.shape[0] - 1]):
        _flip_row(out, x, shape, flipped, r)


@njit(cache=True, nogil=True, parallel=True)
def flip_parallel(out, x, shape, flipped):
    for r in prange(out.shape[0] // shape[shape.shape[0] - 1]):
        _flip_row(out, x, shape, flipped, r)


def flip(out, x, dims):
    """``out[...] = x`` reversed along ``dims``; both C-contiguous, of one shape."""
    if x.shape != out.shape:                      # the kernel reads x with out's shape
        raise ValueError(f"flip: shapes {x.shape} and {out.shape} differ")
    if out.size == 0:
        return out
    shape = np.array(out.shape or (1,), np.int64)
    flipped = np.zeros(len(shape), np.bool_)
    flipped[list(dims)] = True
    if out.size >= PARALLEL_MIN:
        with parallel_lock:
            flip_parallel(out.reshape(-1), x.reshape(-1), shape, flipped)
    else:
        flip_serial(out.reshape(-1), x.reshape(-1), shape, flipped)
    return out


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
