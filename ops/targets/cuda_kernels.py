"""The CUDA target's hand-written kernels: the matrix product, the extreme values, fills.

(The accumulating reductions are generated from the op table: ``cuda_codegen.accumulation``.)

* ``extreme``: max/min with the index of the first extreme (NaN counts as the maximum and the
  minimum, as on the CPU), one block per output: a strided scan per thread, then a tree of
  (value, index) pairs in shared memory.
* ``matmul``: the classic tiled product, ``TILE`` x ``TILE`` threads per block, both operands'
  tiles staged through shared memory, any strides (a transposed weight is read in place).

Operands are flat device buffers with an element offset; shapes and strides are tuples
passed by value. Under the simulator each thread is a Python thread, so blocks are smaller.
"""
import math

import numpy as np
from numba import config, cuda, float64, int64

__all__ = ["THREADS", "TILE", "matmul_kernel", "fill_kernel", "extreme_kernel", "index_backward_kernel"]

SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 8 if SIMULATED else 256      # threads per reduction block (a power of two)
TILE = 4 if SIMULATED else 16          # matmul tile edge


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


def _extreme(nbtype):
    @cuda.jit
    def kernel(x, xo, kshape, kstr, rshape, rstr, nred, smallest, vals, idx):
        j = cuda.blockIdx.x
        t = cuda.threadIdx.x
        base = xo
        rem = j
        for d in range(len(kshape) - 1, -1, -1):
            q = rem % kshape[d]
            rem //= kshape[d]
            base += q * kstr[d]
        best = nbtype(0)
        at = int64(-1)
        r = t
        while r < nred:
            p = base
            rem = r
            for d in range(len(rshape) - 1, -1, -1):
                q = rem % rshape[d]
                rem //= rshape[d]
                p += q * rstr[d]
            v = nbtype(x[p])
            if at < 0 or (best == best and (v != v or (v < best if smallest else v > best))):
                best = v
                at = r
            r += THREADS
        sv = cuda.shared.array(THREADS, nbtype)
        si = cuda.shared.array(THREADS, int64)
        sv[t] = best
        si[t] = at
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                v = sv[t + s]
                i = si[t + s]
                b = sv[t]
                k = si[t]
                if i >= 0 and (k < 0 or (b == b and v != v) or (b == b and (v < b if smallest else v > b))
                               or ((v == b or (v != v and b != b)) and i < k)):
                    sv[t] = v
                    si[t] = i
            cuda.syncthreads()
            s //= 2
        if t == 0:
            vals[j] = sv[0]
            idx[j] = si[0]
    return kernel


def extreme_kernel(floating):
    return _cached("extreme", _extreme, floating)


@cuda.jit
def index_backward_kernel(g, idx, gx, red, inner, bad):
    """``gx[o, idx[p], i] = g[p]`` for output position ``p = o * inner + i``; an index outside
    ``[0, red)`` is recorded (atomic minimum of its position), not followed."""
    p = cuda.grid(1)
    if p >= idx.shape[0]:
        return
    k = idx[p]
    if k < 0 or k >= red:
        cuda.atomic.min(bad, 0, int64(p))
        return
    o = p // inner
    gx[(o * red + k) * inner + p - o * inner] = g[p]


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


def matmul_kernel(floating):
    return _cached("matmul", _matmul, floating)


def blocks_for(size, threads):
    """Blocks for a grid-stride launch of ``size`` elements."""
    return max(1, min(math.ceil(size / threads), 65535))


def dtype_floating(dtype):
    return np.dtype(dtype).kind == "f"


# -- advanced indexing through a plan (ops/index.py's Plan: pre x adv x post) ------------------------------
@cuda.jit(device=True)
def _offset(k, shape, strides):
    off = 0
    for d in range(len(shape) - 1, -1, -1):
        n = shape[d]
        off += (k % n) * strides[d]
        k //= n
    return off


@cuda.jit
def gather_kernel(out, src, so, pre_shape, pre_strides, adv, post_shape, post_strides, npost, size):
    """One thread per output element (C order over pre x adv x post)."""
    u = cuda.grid(1)
    if u >= size:
        return
    na = adv.shape[0]
    q = u % npost
    a = (u // npost) % na
    p = u // npost // na
    out[u] = src[so + _offset(p, pre_shape, pre_strides) + adv[a] + _offset(q, post_shape, post_strides)]


@cuda.jit
def scatter_add_kernel(dst, do, vals, pre_shape, pre_strides, adv, post_shape, post_strides, npost, size):
    """One thread per value; repeated positions add up through atomic adds."""
    u = cuda.grid(1)
    if u >= size:
        return
    na = adv.shape[0]
    q = u % npost
    a = (u // npost) % na
    p = u // npost // na
    cuda.atomic.add(dst, do + _offset(p, pre_shape, pre_strides) + adv[a] + _offset(q, post_shape, post_strides),
                    vals[u])


@cuda.jit
def scatter_kernel(dst, do, vals, pre_shape, pre_strides, adv, post_shape, post_strides, npost, size):
    """One thread per (pre, post) position walking the index table in order: distinct
    positions never collide, and a repeated index takes the last value, as on the CPU."""
    w = cuda.grid(1)
    if w >= size:
        return
    na = adv.shape[0]
    p = w // npost
    q = w % npost
    base = do + _offset(p, pre_shape, pre_strides) + _offset(q, post_shape, post_strides)
    for b in range(na):
        dst[base + adv[b]] = vals[(p * na + b) * npost + q]


# -- gather / scatter along one dim (torch.gather, scatter, scatter_add) ----------------------------------
@cuda.jit
def check_index_kernel(idx, size, bad):
    """The first position of a value outside ``[0, size)`` in the flat index (atomic minimum)."""
    i = cuda.grid(1)
    if i < idx.shape[0]:
        k = idx[i]
        if k < 0 or k >= size:
            cuda.atomic.min(bad, 0, int64(i))


@cuda.jit
def gather_dim_kernel(out, oo, ostr, src, so, sstr, idx, shape, dim, size, n):
    """One thread per index element: ``out[pos] = src[pos with coordinate dim = idx[pos]]``."""
    u = cuda.grid(1)
    if u >= n:
        return
    k = idx[u]
    if k < 0 or k >= size:
        return
    rem = u
    po = oo
    ps = so
    for d in range(len(shape) - 1, -1, -1):
        q = rem % shape[d]
        rem //= shape[d]
        po += q * ostr[d]
        ps += (k if d == dim else q) * sstr[d]
    out[po] = src[ps]


@cuda.jit
def scatter_dim_kernel(dst, do, dstr, idx, istr, shape, dim, src, so, sstr, mode, size, nlines):
    """One thread per line along ``dim`` (repeated indices can only meet within a line), walking
    it in order: the last value wins (``mode`` 0), or all add up (1) or multiply (2), as on the CPU."""
    w = cuda.grid(1)
    if w >= nlines:
        return
    rem = w
    bd = do
    bs = so
    bi = 0
    for d in range(len(shape) - 1, -1, -1):
        n = 1 if d == dim else shape[d]
        q = rem % n
        rem //= n
        bd += q * dstr[d]
        bs += q * sstr[d]
        bi += q * istr[d]
    for j in range(shape[dim]):
        k = idx[bi + j * istr[dim]]
        if k >= 0 and k < size:
            p = bd + k * dstr[dim]
            v = src[bs + j * sstr[dim]]
            if mode == 0:
                dst[p] = v
            elif mode == 1:
                dst[p] += v
            else:
                dst[p] *= v
