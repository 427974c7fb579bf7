"""Embedding kernels, on raw arrays: the row gather (forward), the row scatter-add
(backward), and the in-place row renormalisation of ``max_norm``.

Indices are flat ``int64`` arrays; the table is ``(num_weights, dim)`` with any strides.
Every kernel checks each index as it reads it and never reads or writes through one out of
range: it returns the position of the first bad one (-1 if none) and the caller raises
PyTorch's ``IndexError``.

The scatter-add must add repeated indices into the same row, so threads cannot split the
indices; the parallel variant splits the columns instead (each thread owns a band of every
row), which needs no atomics and keeps the summation order of the serial loop.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["gather_rows", "scatter_add_rows", "renorm_rows"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _first_bad(idx, n):
    for i in range(idx.shape[0]):
        if idx[i] < 0 or idx[i] >= n:
            return i
    return -1


@njit(**_JIT)
def _gather(out, weight, idx, skip, scale):
    """``out[i] = weight[idx[i]]`` (divided by the index's count when ``scale``: the adjoint
    of the scaled scatter), or 0 where ``idx[i] == skip``."""
    n = weight.shape[0]
    bad = _first_bad(idx, n)
    if bad >= 0:
        return bad
    counts = _counts(idx, n) if scale else np.zeros(0, np.int64)
    for i in range(idx.shape[0]):
        r = idx[i]
        if r == skip:
            for j in range(out.shape[1]):
                out[i, j] = 0.0
        else:
            f = 1.0 / counts[r] if scale else 1.0
            for j in range(out.shape[1]):
                out[i, j] = weight[r, j] * f if scale else weight[r, j]
    return -1


@njit(**_JIT)
def _counts(idx, n):
    counts = np.zeros(n, np.int64)
    for i in range(idx.shape[0]):
        counts[idx[i]] += 1
    return counts


@njit(inline="always", error_model="numpy")
def _scatter_band(out, grad, idx, skip, scale, counts, lo, hi):
    for i in range(idx.shape[0]):
        r = idx[i]
        if r != skip:
            f = 1.0 / counts[r] if scale else 1.0
            for j in range(lo, hi):
                out[r, j] += grad[i, j] * f


@njit(**_JIT)
def _scatter_serial(out, grad, idx, skip, scale):
    """``out[idx[i]] += grad[i]`` for every ``i`` whose index is not ``skip`` (divided by the
    index's count when ``scale``); ``out`` is zero-filled here."""
    bad = _first_bad(idx, out.shape[0])
    if bad >= 0:
        return bad
    counts = _counts(idx, out.shape[0]) if scale else np.zeros(0, np.int64)
    out[:] = 0.0
    _scatter_band(out, grad, idx, skip, scale, counts, 0, out.shape[1])
    return -1


@njit(parallel=True, **_JIT)
def _scatter_parallel(out, grad, idx, skip, scale, bands):
    bad = _first_bad(idx, out.shape[0])
    if bad >= 0:
        return bad
    counts = _counts(idx, out.shape[0]) if scale else np.zeros(0, np.int64)
    d = out.shape[1]
    for b in prange(bands):
        lo = b * d // bands
        hi = (b + 1) * d // bands
        for r in range(out.shape[0]):
            for j in range(lo, hi):
                out[r, j] = 0.0
        _scatter_band(out, grad, idx, skip, scale, counts, lo, hi)
    return -1


@njit(**_JIT)
def _renorm(weight, idx, max_norm, norm_type):
    """Each row named in ``idx`` (once, however often named) whose ``norm_type``-norm exceeds
    ``max_norm`` is scaled to ``max_norm / (norm + 1e-7)``, as PyTorch's ``embedding_renorm_``."""
    n = weight.shape[0]
    seen = np.zeros(n, np.bool_)
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0 or r >= n:
            return i
        if seen[r]:
            continue
        seen[r] = True
        norm = 0.0
        for j in range(weight.shape[1]):
            v = abs(weight[r, j])
            if norm_type == 1.0:
                norm += v
            elif norm_type == 2.0:
                norm += v * v
            elif norm_type == np.inf:
                norm = max(norm, v)
            else:
                norm += v ** norm_type
        if norm_type == 2.0:
            norm = np.sqrt(norm)
        elif norm_type != 1.0 and norm_type != np.inf:
            norm = norm ** (1.0 / norm_type)
        if norm > max_norm:
            f = max_norm / (norm + 1e-7)
            for j in range(weight.shape[1]):
                weight[r, j] *= f
    return -1


def _raise(bad):
    if bad >= 0:
        raise IndexError("index out of range in self")


def _flat(indices):
    return np.ascontiguousarray(indices, np.int64).reshape(-1)


def gather_rows(weight, indices, skip=-1, scale_by_freq=False):
    """The rows of ``weight`` (2-D) named by ``indices`` (any shape), shaped
    ``indices.shape + (dim,)``; rows named ``skip`` come out as zeros."""
    flat = _flat(indices)
    out = np.empty((flat.size, weight.shape[1]), weight.dtype)
    _raise(_gather(out, weight, flat, skip, scale_by_freq))
    return out.reshape(indices.shape + (weight.shape[1],))


def scatter_add_rows(grad, indices, num_weights, skip=-1, scale_by_freq=False):
    """The ``(num_weights, dim)`` gradient of the table: each row of ``grad`` (shaped
    ``indices.shape + (dim,)``) added into the row its index names, except ``skip``."""
    flat = _flat(indices)
    d = grad.shape[-1]
    g = np.ascontiguousarray(grad).reshape(flat.size, d)
    out = np.empty((num_weights, d), grad.dtype)
    if g.size + out.size >= PARALLEL_MIN and d > 1:
        with parallel_lock:
            bad = _scatter_parallel(out, g, flat, skip, scale_by_freq, min(d, 16))
    else:
        bad = _scatter_serial(out, g, flat, skip, scale_by_freq)
    _raise(bad)
    return out


def renorm_rows(weight, indices, max_norm, norm_type):
    """``weight`` (2-D, changed in place): the rows named by ``indices`` clipped to ``max_norm``.
    A bad index raises PyTorch's error for this step (its renorm selects the row)."""
    flat = _flat(indices)
    bad = _renorm(weight, flat, float(max_norm), float(norm_type))
    if bad >= 0:
        raise IndexError(f"select(): index {flat[bad]} out of range for tensor of size {list(weight.shape)} "
                         "at dimension 0")


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
