"""``nonzero`` on CUDA: the coordinates of the nonzero elements, in C order, in three launches.

1. ``count_kernel``: one thread per element (unravelled over the shape and element strides,
   so any layout), a tree count per block of ``THREADS`` elements;
2. ``scan_kernel``: one block turns the block counts into each block's first output row
   (exclusive prefix sums; the total in the last entry);
3. ``fill_kernel``: each block ranks its nonzero elements by an in-block prefix sum and writes
   their coordinates from its first row, so rows keep C order.

The output's size depends on the data: its row count is the one value read back to the host
(PyTorch's CUDA ``nonzero`` synchronizes for it too).
"""
from numba import cuda, int64

from .cuda_kernels import THREADS

__all__ = ["count_kernel", "scan_kernel", "fill_kernel"]


@cuda.jit(device=True)
def _offset(i, xo, shape, strides):
    p = xo
    rem = i
    for d in range(len(shape) - 1, -1, -1):
        q = rem % shape[d]
        rem //= shape[d]
        p += q * strides[d]
    return p


@cuda.jit
def count_kernel(x, xo, shape, strides, n, counts):
    t = cuda.threadIdx.x
    i = cuda.blockIdx.x * THREADS + t
    sh = cuda.shared.array(THREADS, int64)
    sh[t] = 1 if i < n and x[_offset(i, xo, shape, strides)] != 0 else 0
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        counts[cuda.blockIdx.x] = sh[0]


@cuda.jit(device=True)
def _inclusive_scan(sh, t):
    """``sh[t]`` becomes ``sh[0] + ... + sh[t]`` (Hillis-Steele; every thread of the block calls it)."""
    step = 1
    while step < THREADS:
        v = sh[t - step] if t >= step else 0
        cuda.syncthreads()
        sh[t] += v
        cuda.syncthreads()
        step *= 2


@cuda.jit
def scan_kernel(counts, nblocks, starts):
    """One block: ``starts[b]`` = counts before block ``b``; ``starts[nblocks]`` the total."""
    t = cuda.threadIdx.x
    chunk = (nblocks + THREADS - 1) // THREADS
    lo = min(t * chunk, nblocks)
    hi = min(lo + chunk, nblocks)
    own = 0
    for k in range(lo, hi):
        own += counts[k]
    sh = cuda.shared.array(THREADS, int64)
    sh[t] = own
    cuda.syncthreads()
    _inclusive_scan(sh, t)
    at = sh[t] - own
    for k in range(lo, hi):
        starts[k] = at
        at += counts[k]
    if t == THREADS - 1:
        starts[nblocks] = sh[t]


@cuda.jit
def fill_kernel(x, xo, shape, strides, n, starts, out):
    """``out`` (rows of ``len(shape)`` int64 coordinates, flat) from row ``starts[block]``."""
    t = cuda.threadIdx.x
    i = cuda.blockIdx.x * THREADS + t
    hit = 1 if i < n and x[_offset(i, xo, shape, strides)] != 0 else 0
    sh = cuda.shared.array(THREADS, int64)
    sh[t] = hit
    cuda.syncthreads()
    _inclusive_scan(sh, t)
    if hit:
        nd = len(shape)
        row = starts[cuda.blockIdx.x] + sh[t] - 1
        rem = i
        for d in range(nd - 1, -1, -1):
            out[row * nd + d] = rem % shape[d]
            rem //= shape[d]
