"""The CUDA target's hand-written kernels: the accumulating reduction and the matrix product.

* ``accumulate``: one output element per group of ``parts`` blocks; each thread accumulates a
  strided share of the reduced elements (in float64 for floats, int64 otherwise, as the CPU
  does), the block sums its threads' values by a tree in shared memory, and when several blocks
  share an output a second launch sums their partials the same way.
* ``matmul``: the classic tiled product, ``TILE`` x ``TILE`` threads per block, both operands'
  tiles staged through shared memory, any strides (a transposed weight is read in place).

Operands are flat device buffers with an element offset; shapes and strides are tuples
passed by value. Under the simulator each thread is a Python thread, so blocks are smaller.
"""
import math

import numpy as np
from numba import config, cuda, float64, int64

__all__ = ["THREADS", "TILE", "accumulate_kernel", "partials_kernel", "matmul_kernel", "fill_kernel"]

SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 32 if SIMULATED else 256     # threads per reduction block (a power of two)
TILE = 4 if SIMULATED else 16          # matmul tile edge


def _accumulate(nbtype, terms):
    """A sum (``terms``: "v") or a sum of squared deviations (not yet used) kernel."""
    @cuda.jit
    def kernel(x, xo, kshape, kstr, rshape, rstr, nred, parts, out, oo, scale, partials):
        b = cuda.blockIdx.x
        t = cuda.threadIdx.x
        j = b // parts
        part = b - j * parts
        # the kept dims give the output's first input element
        base = xo
        rem = j
        for d in range(len(kshape) - 1, -1, -1):
            q = rem % kshape[d]
            rem //= kshape[d]
            base += q * kstr[d]
        acc = nbtype(0)
        r = part * THREADS + t
        while r < nred:
            p = base
            rem = r
            for d in range(len(rshape) - 1, -1, -1):
                q = rem % rshape[d]
                rem //= rshape[d]
                p += q * rstr[d]
            acc += x[p]
            r += parts * THREADS
        sh = cuda.shared.array(THREADS, nbtype)
        sh[t] = acc
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                sh[t] += sh[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            if parts == 1:
                out[oo + j] = sh[0] * scale
            else:
                partials[b] = sh[0]
    return kernel


def _partials(nbtype):
    @cuda.jit
    def kernel(partials, parts, out, oo, scale):
        j = cuda.blockIdx.x
        t = cuda.threadIdx.x
        acc = nbtype(0)
        k = t
        while k < parts:
            acc += partials[j * parts + k]
            k += THREADS
        sh = cuda.shared.array(THREADS, nbtype)
        sh[t] = acc
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                sh[t] += sh[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            out[oo + j] = sh[0] * scale
    return kernel


def _matmul(nbtype):
    @cuda.jit
    def kernel(out, oo, ostr, a, ao, astr, b, bo, bstr, n, m, k):
        i = cuda.blockIdx.z
        tr = cuda.threadIdx.y
        tc = cuda.threadIdx.x
        r = cuda.blockIdx.y * TILE + tr
        c = cuda.blockIdx.x * TILE + tc
        ta = cuda.shared.array((TILE, TILE), nbtype)
        tb = cuda.shared.array((TILE, TILE), nbtype)
        acc = nbtype(0)
        for p0 in range(0, k, TILE):
            pa = p0 + tc
            pb = p0 + tr
            ta[tr, tc] = a[ao + i * astr[0] + r * astr[1] + pa * astr[2]] if r < n and pa < k else nbtype(0)
            tb[tr, tc] = b[bo + i * bstr[0] + pb * bstr[1] + c * bstr[2]] if pb < k and c < m else nbtype(0)
            cuda.syncthreads()
            for q in range(TILE):
                acc += ta[tr, q] * tb[q, tc]
            cuda.syncthreads()
        if r < n and c < m:
            out[oo + i * ostr[0] + r * ostr[1] + c * ostr[2]] = acc
    return kernel


@cuda.jit
def fill_kernel(out, size, value):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < size:
        out[i] = value
        i += step


_KERNELS = {}


def _cached(kind, make, floating):
    key = (kind, floating)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = make(float64 if floating else int64)
    return k


def accumulate_kernel(floating):
    return _cached("sum", lambda t: _accumulate(t, "v"), floating)


def partials_kernel(floating):
    return _cached("partials", _partials, floating)


def matmul_kernel(floating):
    return _cached("matmul", _matmul, floating)


def blocks_for(size, threads):
    """Blocks for a grid-stride launch of ``size`` elements."""
    return max(1, min(math.ceil(size / threads), 65535))


def dtype_floating(dtype):
    return np.dtype(dtype).kind == "f"
