"""The ``scan`` family on CUDA: cumulative sums and products, running extremes, and the
cumulative product's backward, one thread per line with a loop along it (as ``ops/scan.py``
does per row on the CPU, and with its rules: sums and products accumulate in float64 for
floats and int64 for integers; a NaN, once met, is the running extreme).

A *line* is ``outer`` x ``inner`` lines of ``length`` elements: line ``L`` starts at
``(L // inner) * so + (L % inner) * si`` and steps by ``step`` (element strides), so rows of a
2-D block (``inner == 1``) and columns of a 3-D block (``cumulative_along``) are one kernel.
Every index is computed from the shapes: nothing indexes with a value read from an array.
"""
import numpy as np
from numba import cuda, float64, int64

__all__ = ["Scan"]

_THREADS = 32


@cuda.jit(device=True, inline=True)
def _start(line, inner, so, si, offset):
    return offset + (line // inner) * so + (line % inner) * si


def _scan(acc_type):
    @cuda.jit
    def kernel(x, xo, xso, xsi, xstep, out, oo, oso, osi, ostep, lines, inner, length, product):
        line = cuda.grid(1)
        if line >= lines:
            return
        p = _start(line, inner, xso, xsi, xo)
        q = _start(line, inner, oso, osi, oo)
        acc = acc_type(1) if product else acc_type(0)
        for _ in range(length):
            if product:
                acc = acc * x[p]
            else:
                acc = acc + x[p]
            out[q] = acc
            p += xstep
            q += ostep
    return kernel


_SCAN = {True: _scan(float64), False: _scan(int64)}


@cuda.jit
def _cumextreme_kernel(x, xo, xs0, xs1, values, idx, rows, n, smallest):
    """Rows of the 2-D block ``x``; ``values`` and ``idx`` C-contiguous (rows, n)."""
    r = cuda.grid(1)
    if r >= rows or n == 0:
        return
    best = x[xo + r * xs0]
    at = 0
    for i in range(n):
        v = x[xo + r * xs0 + i * xs1]
        if v != v or (best == best and (v <= best if smallest else v >= best)):
            best = v
            at = i
        values[r * n + i] = best
        idx[r * n + i] = at


@cuda.jit
def _cumprod_backward_kernel(g, go, gs, x, xo, xs, y, yo, ys, out, rows, n):
    """``ops/scan.py``'s ``cumprod_backward`` per row (exact with zeros); ``out`` C-contiguous
    (rows, n), zeros where the rule writes nothing; ``gs``/``xs``/``ys``: (row, column) strides."""
    r = cuda.grid(1)
    if r >= rows:
        return
    for i in range(n):
        out[r * n + i] = 0
    z = n
    for i in range(n):
        if x[xo + r * xs[0] + i * xs[1]] == 0:
            z = i
            break
    acc = float64(0)
    for i in range(z - 1, -1, -1):
        acc += g[go + r * gs[0] + i * gs[1]] * y[yo + r * ys[0] + i * ys[1]]
        out[r * n + i] = acc / x[xo + r * xs[0] + i * xs[1]]
    if z < n:
        run = float64(1) if z == 0 else float64(y[yo + r * ys[0] + (z - 1) * ys[1]])
        total = float64(0)
        for k in range(z, n):
            if k > z:
                run *= x[xo + r * xs[0] + k * xs[1]]
            total += g[go + r * gs[0] + k * gs[1]] * run
        out[r * n + z] = total


def _grid(n):
    threads = max(1, min(_THREADS, n))
    return -(-n // threads), threads


class Scan:
    """The CPU's ``ops/scan.py`` members over ``DeviceArray`` blocks, for ``CudaTarget.scan``."""

    def __init__(self, target):
        self._t = target

    def cumulative(self, x, out, product):
        """``out[r, i]`` = sum (product) of ``x[r, :i + 1]`` for 2-D blocks."""
        if x.size:
            xs, os_ = x.element_strides(), out.element_strides()
            blocks, threads = _grid(x.shape[0])
            _SCAN[out.dtype.kind == "f"][blocks, threads](x.buf, x.offset, xs[0], 0, xs[1], out.buf, out.offset,
                                                          os_[0], 0, os_[1], x.shape[0], 1, x.shape[1], product)
        return out

    def cumulative_along(self, x, out, product):
        """``out[o, i, j]`` = sum (product) of ``x[o, :i + 1, j]`` for 3-D blocks."""
        if x.size:
            xs, os_ = x.element_strides(), out.element_strides()
            lines = x.shape[0] * x.shape[2]
            blocks, threads = _grid(lines)
            _SCAN[out.dtype.kind == "f"][blocks, threads](x.buf, x.offset, xs[0], xs[2], xs[1], out.buf, out.offset,
                                                          os_[0], os_[2], os_[1], lines, x.shape[2], x.shape[1],
                                                          product)
        return out

    def cumextreme(self, x, smallest):
        """Running maximum (minimum) of each row and the position it was last taken from."""
        values, idx = self._t.empty(x.shape, x.dtype), self._t.empty(x.shape, np.int64)
        if x.size:
            xs = x.element_strides()
            blocks, threads = _grid(x.shape[0])
            _cumextreme_kernel[blocks, threads](x.buf, x.offset, xs[0], xs[1], values.buf, idx.buf, x.shape[0],
                                                x.shape[1], smallest)
        return values, idx

    def cumprod_backward(self, g, x, y):
        out = self._t.empty(x.shape, x.dtype)
        if x.size:
            blocks, threads = _grid(x.shape[0])
            _cumprod_backward_kernel[blocks, threads](g.buf, g.offset, g.element_strides(), x.buf, x.offset,
                                                      x.element_strides(), y.buf, y.offset, y.element_strides(),
                                                      out.buf, x.shape[0], x.shape[1])
        return out

