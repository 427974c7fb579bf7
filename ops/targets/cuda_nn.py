"""The CUDA target's softmax/log-softmax and negative log-likelihood kernels.

* softmax: one block per line (the elements along ``dim``, ``inner`` apart in a C-contiguous
  array): a shared-memory tree finds the line's maximum (NaN wins, as on the CPU), a second
  sums ``exp(v - max)`` in float64, then every thread writes its share of the line. The
  backward is the same shape: one tree sum per line (``sum(g)`` for log-softmax, ``sum(g * y)``
  for softmax), then ``g - exp(y) * s`` or ``y * (g - s)``.
* nll: one thread per position. A target out of range is recorded with an atomic minimum of
  its position, read back after the launch, and raised as PyTorch's error by the caller;
  nothing is read or written through it.
"""
import math

from numba import cuda, float64, int64

from .cuda_kernels import THREADS

__all__ = ["softmax_kernel", "softmax_backward_kernel", "nll_forward_kernel", "nll_backward_kernel"]


@cuda.jit
def softmax_kernel(x, xo, y, length, inner, log):
    line = cuda.blockIdx.x
    t = cuda.threadIdx.x
    base = (line // inner) * length * inner + line % inner
    sh = cuda.shared.array(THREADS, float64)
    m = -math.inf
    j = t
    while j < length:
        v = float64(x[xo + base + j * inner])
        if v > m or v != v:
            m = v
        j += THREADS
    sh[t] = m
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            a = sh[t + s]
            if a > sh[t] or a != a:
                sh[t] = a
        cuda.syncthreads()
        s //= 2
    m = sh[0]
    cuda.syncthreads()
    if m == math.inf or m == -math.inf:      # an infinite maximum shifts by 0, as on the CPU
        shift = 0.0
    else:
        shift = m
    acc = 0.0
    j = t
    while j < length:
        acc += math.exp(float64(x[xo + base + j * inner]) - shift)
        j += THREADS
    sh[t] = acc
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    j = t
    while j < length:
        v = float64(x[xo + base + j * inner]) - shift
        if log:
            y[base + j * inner] = v - math.log(total)
        else:
            y[base + j * inner] = math.exp(v) / total
        j += THREADS


@cuda.jit
def softmax_backward_kernel(g, go, y, gx, length, inner, log):
    line = cuda.blockIdx.x
    t = cuda.threadIdx.x
    base = (line // inner) * length * inner + line % inner
    sh = cuda.shared.array(THREADS, float64)
    acc = 0.0
    j = t
    while j < length:
        p = base + j * inner
        acc += float64(g[go + p]) if log else float64(g[go + p]) * float64(y[p])
        j += THREADS
    sh[t] = acc
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    j = t
    while j < length:
        p = base + j * inner
        if log:
            gx[p] = g[go + p] - math.exp(float64(y[p])) * total
        else:
            gx[p] = y[p] * (g[go + p] - total)
        j += THREADS


@cuda.jit
def nll_forward_kernel(x, xo, xs, shape, target, weight, has_weight, out, wout, bad, ignore_index):
    i = cuda.grid(1)
    size = target.shape[0]
    if i >= size:
        return
    hw = shape[2] * shape[3]
    n = i // hw
    h = (i % hw) // shape[3]
    w = i % shape[3]
    tgt = target[i]
    if tgt == ignore_index:
        out[i] = 0
        wout[i] = 0
    elif tgt < 0 or tgt >= shape[1]:
        cuda.atomic.min(bad, 0, int64(i))
        out[i] = 0
        wout[i] = 0
    else:
        wt = weight[tgt] if has_weight else 1
        out[i] = -x[xo + n * xs[0] + tgt * xs[1] + h * xs[2] + w * xs[3]] * wt
        wout[i] = wt


@cuda.jit
def nll_backward_kernel(out, shape, target, weight, has_weight, grad, per_position, bad, ignore_index):
    """``out`` is zero-filled and C-contiguous ``(N, C, H, W)``."""
    i = cuda.grid(1)
    if i >= target.shape[0]:
        return
    hw = shape[2] * shape[3]
    n = i // hw
    k = i % hw
    tgt = target[i]
    if tgt == ignore_index:
        return
    if tgt < 0 or tgt >= shape[1]:
        cuda.atomic.min(bad, 0, int64(i))
        return
    wt = weight[tgt] if has_weight else 1
    out[(n * shape[1] + tgt) * hw + k] = wt * -grad[i if per_position else 0]
