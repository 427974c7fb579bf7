"""The CUDA target's layer families: ``conv``, ``pool``, ``norm`` and ``embedding``, with the
method names and signatures of the CPU's ``ops/conv.py``, ``ops/pool.py``, ``ops/norm.py`` and
``ops/embedding.py``, so the layers call ``target_of(x).conv.forward(...)`` on either target.

Each method allocates through the target, launches the kernels of ``cuda_layer_kernels`` and
uses the target's own matrix product (``linalg.bmm``: one batched product over the groups of
a convolution, as the CPU makes one BLAS call per group), its reductions and its elementwise
kernels (the ``(O, N*L)`` <-> ``(N, O, L)`` transposes of a convolution are copies of
permuted views). Host-side shape arithmetic and shape checks are the CPU modules' own.

Geometry is passed by value (tuples); average pooling's windows (host arrays planned by the
layer) are copied to the device once per distinct geometry and kept. The only reads back to
the host are the flags of the index checks, read when an index can be bad.
"""
import math

import numpy as np
from numba import cuda

from . import cuda_layer_kernels as k
from .cuda_kernels import SIMULATED, THREADS, check_index_kernel
from ..conv import _check_grad, _geometry, out_size
from ..norm import _check as _check_norm
from ..pool import _check_shape, pool_out_size

__all__ = ["families"]

_THREADS_1D = 32 if SIMULATED else 256      # threads per block of one-thread-per-element launches


def families(target):
    """The ``conv``, ``pool``, ``norm`` and ``embedding`` families of CUDA target ``target``."""
    return ConvKernels(target), PoolKernels(target), NormKernels(target), EmbeddingKernels(target)


def _launch(kernel, size, *args):
    """One thread per element of ``size``."""
    threads = min(_THREADS_1D, size)
    kernel[-(-size // threads), threads](*args)


def _flat(arr):
    """A C-contiguous array's elements as a 1-D device array (a view from its offset)."""
    return arr.buf[arr.offset:arr.offset + max(arr.size, 1)]


class _Layers:
    def __init__(self, target):
        self.t = target

    def _c(self, arr):
        """``arr``'s elements as a flat buffer, copied first where it is not C-contiguous."""
        return _flat(self.t.contiguous(arr))

    def _vec(self, arr, like):
        """A flat parameter vector (or ``like``, a stand-in never read, when ``None``) and whether it is given."""
        if arr is None:
            return like, False
        return self._c(arr), True

    def _first_bad(self, kernel, n, *args):
        """Launch ``kernel(*args, bad)`` over ``n`` threads; the first position it flagged, or -1."""
        bad = cuda.to_device(np.array([n], np.int64))
        _launch(kernel, n, *args, bad)
        first = int(bad.copy_to_host()[0])
        return first if first < n else -1

    @staticmethod
    def _at(flat, i):
        """Element ``i`` of a flat device buffer, read back (for an error message)."""
        return int(flat[i:i + 1].copy_to_host()[0])


# -- convolution ------------------------------------------------------------------------------
class ConvKernels(_Layers):
    """im2col, the target's batched product per group, col2im."""
    out_size = staticmethod(out_size)

    def im2col(self, x, w_shape, stride, pad_lo, pad_hi, dilation):
        """``x`` (N, C, H, W), any strides, as ``cols`` (C*kh*kw, N*OH*OW)."""
        geo = _geometry(x.shape, w_shape, stride, pad_lo, pad_hi, dilation)
        kh, kw, oh, ow = geo[:4]
        n, c, h, w = x.shape
        cols = self.t.empty((c * kh * kw, n * oh * ow), x.dtype)
        if cols.size:
            _launch(k.im2col, cols.size, cols.buf, x.buf, x.offset, x.element_strides(), n, c, h, w, geo, cols.size)
        return cols

    def _by_group(self, a, groups):
        """A 2-D array's rows as ``(groups, rows / groups, cols)`` (a view of a contiguous array)."""
        t = self.t
        return t.reshape(t.contiguous(a), (groups, a.shape[0] // groups, a.shape[1]))

    def forward(self, x, w, b, stride, pad_lo, pad_hi, dilation, groups):
        """As ``ops/conv.py``'s: the output (N, O, OH, OW) and the ``cols`` kept for the weight gradient."""
        t = self.t
        n, o = x.shape[0], w.shape[0]
        geo = _geometry(x.shape, w.shape, stride, pad_lo, pad_hi, dilation)
        oh, ow = geo[2:4]
        cols = self.im2col(x, w.shape, stride, pad_lo, pad_hi, dilation)
        if n * o * oh * ow == 0:
            return t.empty((n, o, oh, ow), x.dtype), cols
        w2 = t.reshape(t.contiguous(w), (o, cols.shape[0] // groups))
        prod = t.linalg.bmm(self._by_group(w2, groups), self._by_group(cols, groups))       # (O, N*L)
        nol = t.permute(t.reshape(prod, (o, n, oh * ow)), (1, 0, 2))
        if b is None:
            out = t.copy(nol)
        else:
            out = t.launch("add", (nol, t.reshape(b, (1, o, 1))), (n, o, oh * ow), x.dtype)
        return t.reshape(out, (n, o, oh, ow)), cols

    def transposed(self, go, want_db=False):
        """``go`` (N, O, OH, OW) as ``(O, N*OH*OW)``, and the bias gradient (or None)."""
        t = self.t
        n, o = go.shape[:2]
        l_ = go.shape[2] * go.shape[3]
        go_t = t.reshape(t.copy(t.permute(t.reshape(go, (n, o, l_)), (1, 0, 2))), (o, n * l_))
        return go_t, (self.bias_grad(go) if want_db else None)

    def bias_grad(self, go):
        t = self.t
        n, o = go.shape[:2]
        if go.size == 0:
            return t.zeros((o,), go.dtype)
        g3 = t.reshape(go, (n, o, go.shape[2] * go.shape[3]))
        return t.reshape(t.reduce.sum(g3, (0, 2), go.dtype), (o,))

    def input_grad(self, go, w, x_shape, stride, pad_lo, pad_hi, dilation, groups, go_t=None):
        """``col2im(W^T @ go)`` per group."""
        t = self.t
        o = w.shape[0]
        geo = _geometry(x_shape, w.shape, stride, pad_lo, pad_hi, dilation)
        _check_grad(go, (x_shape[0], o, geo[2], geo[3]))
        rows, ncols = x_shape[1] * geo[0] * geo[1], go.shape[2] * go.shape[3] * x_shape[0]
        dx = t.empty(tuple(x_shape), go.dtype)
        if dx.size == 0:
            return dx
        if o and ncols:
            if go_t is None:
                go_t = self.transposed(go)[0]
            wg = self._by_group(t.reshape(t.contiguous(w), (o, rows // groups)), groups)
            dcols = t.linalg.bmm(t.permute(wg, (0, 2, 1)), self._by_group(go_t, groups))    # (G, rows/G, N*L)
        else:
            dcols = t.zeros((rows, ncols), go.dtype)
        n, c, h, w_ = x_shape
        _launch(k.col2im, dx.size, dx.buf, _flat(dcols), n, c, h, w_, geo, dx.size)
        return dx

    def weight_grad(self, cols, go, w_shape, groups, go_t=None):
        """``go_g @ cols_g^T`` per group, shaped ``w_shape``."""
        t = self.t
        o = w_shape[0]
        per = math.prod(w_shape[1:])
        if o * per == 0:
            return t.empty(tuple(w_shape), go.dtype)
        if cols.shape[1] == 0:
            return t.zeros(tuple(w_shape), go.dtype)
        if go_t is None:
            go_t = self.transposed(go)[0]
        dw = t.linalg.bmm(self._by_group(go_t, groups), t.permute(self._by_group(cols, groups), (0, 2, 1)))
        return t.reshape(dw, tuple(w_shape))


# -- pooling ----------------------------------------------------------------------------------
class PoolKernels(_Layers):
    """Max pooling with indices (atomic-add backward), average pooling over explicit windows."""
    pool_out_size = staticmethod(pool_out_size)

    def __init__(self, target):
        super().__init__(target)
        self._windows = {}

    def max_forward(self, x, out_hw, kernel, stride, padding, dilation):
        t = self.t
        out = t.empty((x.shape[0], *out_hw), x.dtype)
        idx = t.empty(out.shape, np.int64)
        if out.size:
            win = (*kernel, *stride, *padding, *dilation)
            _launch(k.max_pool, out.size, out.buf, idx.buf, x.buf, x.offset, x.element_strides(), x.shape[1],
                    x.shape[2], out_hw[0], out_hw[1], win, out.size)
        return out, idx

    def _bad_index(self, idx, bad, size):
        raise RuntimeError(f"index {self._at(idx, bad)} is out of bounds for a pooled plane of {size} elements")

    def max_backward(self, go, idx, in_hw):
        t = self.t
        _check_shape(idx, go.shape, "indices")
        dx = t.zeros((go.shape[0], *in_hw), go.dtype)
        if dx.size and go.size:
            hw = in_hw[0] * in_hw[1]
            flat = self._c(t.astype(idx, np.dtype(np.int64)))
            bad = self._first_bad(k.max_scatter, go.size, dx.buf, self._c(go), flat, hw, go.shape[1] * go.shape[2],
                                  go.size)
            if bad >= 0:
                self._bad_index(flat, bad, hw)
        return dx

    def max_gather(self, g, idx):
        t = self.t
        _check_shape(idx, (g.shape[0], *idx.shape[1:]), "indices")
        out = t.empty(idx.shape, g.dtype)
        if out.size:
            hw = g.shape[1] * g.shape[2]
            flat = self._c(t.astype(idx, np.dtype(np.int64)))
            bad = self._first_bad(k.max_gather, out.size, out.buf, self._c(g), flat, hw, idx.shape[1] * idx.shape[2],
                                  out.size)
            if bad >= 0:
                self._bad_index(flat, bad, hw)
        return out

    def _on_device(self, windows):
        """The six window arrays on the device, copied once per distinct geometry."""
        key = tuple(np.asarray(a).tobytes() for a in windows)
        dev = self._windows.get(key)
        if dev is None:
            if len(self._windows) > 256:
                self._windows.clear()
            dev = self._windows[key] = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in windows)
        return dev

    def avg_forward(self, x, windows):
        t = self.t
        out = t.empty((x.shape[0], windows[0].size, windows[3].size), x.dtype)
        if out.size:
            _launch(k.avg_pool, out.size, out.buf, x.buf, x.offset, x.element_strides(), x.shape[1], x.shape[2],
                    out.shape[1], out.shape[2], *self._on_device(windows), out.size)
        return out

    def avg_backward(self, go, windows, in_hw):
        t = self.t
        _check_shape(go, (go.shape[0], windows[0].size, windows[3].size), "a gradient")
        dx = t.empty((go.shape[0], *in_hw), go.dtype)
        if dx.size:
            _launch(k.avg_pool_backward, dx.size, dx.buf, self._c(go), in_hw[0], in_hw[1], go.shape[1], go.shape[2],
                    *self._on_device(windows), dx.size)
        return dx


# -- normalisation ----------------------------------------------------------------------------
class NormKernels(_Layers):
    """Batch norm over (N, C, L) and row norm over (R, M), one block per channel or row."""

    def _nan(self, n):
        return self.t.full((n,), math.nan, np.float64)

    def batch_forward(self, x, w, b, running_mean, running_var, train, momentum, eps):
        """As ``ops/norm.py``'s: the output and the float64 mean and 1/std per channel; training
        updates the running statistics in place (on the device) when given."""
        t = self.t
        n, c, l_ = x.shape
        out = t.empty(x.shape, x.dtype)
        if c == 0 or (train and x.size == 0):      # an empty batch: no statistics, running ones untouched
            return out, self._nan(c), self._nan(c)
        mean, invstd, var = (t.empty((c,), np.float64) for _ in range(3))
        track = train and running_mean is not None
        stats = [a if a is None or t.is_contiguous(a) else t.copy(a) for a in (running_mean, running_var)]
        rm = _flat(stats[0]) if stats[0] is not None else mean.buf
        rv = _flat(stats[1]) if stats[1] is not None else var.buf
        w_, has_w = self._vec(w, mean.buf)
        b_, has_b = self._vec(b, mean.buf)
        m = n * l_
        k.batch_norm[c, THREADS](out.buf, x.buf, x.offset, x.element_strides(), n, l_, mean.buf, invstd.buf, var.buf,
                                 w_, b_, has_w, has_b, train, float(eps), rm, rv, track, float(momentum),
                                 m / (m - 1) if m > 1 else math.nan)
        if track:
            for given, used in zip((running_mean, running_var), stats):
                if used is not given:              # a strided running statistic: written back
                    t.copy_into(given, used)
        return out, mean, invstd

    def batch_backward(self, go, x, w, mean, invstd, train, need_dx):
        t = self.t
        n, c, l_ = x.shape
        _check_norm(go, x, mean, c, w, c)
        dw, db = t.empty((c,), go.dtype), t.empty((c,), go.dtype)
        dx = t.empty(x.shape, go.dtype) if need_dx else None
        if c:
            w_, has_w = self._vec(w, dw.buf)
            k.batch_norm_backward[c, THREADS](dx.buf if need_dx else dw.buf, dw.buf, db.buf, self._c(go), self._c(x),
                                              n, l_, self._c(mean), self._c(invstd), w_, has_w, train, need_dx)
        return dx, dw, db

    def row_forward(self, x, w, b, groups, cg, l_, eps):
        t = self.t
        r, m = x.shape
        out = t.empty(x.shape, x.dtype)
        if x.size == 0:
            return out, self._nan(r), self._nan(r)
        mean, invstd = t.empty((r,), np.float64), t.empty((r,), np.float64)
        w_, has_w = self._vec(w, mean.buf)
        b_, has_b = self._vec(b, mean.buf)
        k.row_norm[r, THREADS](out.buf, x.buf, x.offset, x.element_strides(), m, mean.buf, invstd.buf, w_, b_, has_w,
                               has_b, groups, cg, l_, float(eps))
        return out, mean, invstd

    def row_backward(self, go, x, w, mean, invstd, groups, cg, l_, need_dx, need_params):
        t = self.t
        r, m = x.shape
        _check_norm(go, x, mean, r if m == cg * l_ else -1, w, groups * cg)
        xs, gs, ms, iv = self._c(x), self._c(go), self._c(mean), self._c(invstd)
        w_, has_w = self._vec(w, ms)
        dx = dw = db = None
        if need_dx:
            dx = t.empty(x.shape, go.dtype)
            if x.size:
                k.row_norm_backward[r, THREADS](dx.buf, gs, xs, m, ms, iv, w_, has_w, groups, cg, l_)
        if need_params:
            dw, db = t.empty((groups * cg,), go.dtype), t.empty((groups * cg,), go.dtype)
            if groups * cg:
                k.row_norm_params[groups * cg, THREADS](dw.buf, db.buf, gs, xs, r, m, ms, iv, groups, cg, l_)
        return dx, dw, db


# -- embedding --------------------------------------------------------------------------------
class EmbeddingKernels(_Layers):
    """Row gather, atomic row scatter-add, and ``max_norm``'s in-place renormalisation."""

    def _indices(self, indices, n):
        """The flat int64 indices and the position of the first outside ``[0, n)`` (or -1)."""
        flat = self._c(self.t.astype(indices, np.dtype(np.int64)))
        size = indices.size
        return flat, (self._first_bad(check_index_kernel, size, flat, n) if size else -1)

    def _counts(self, flat, size, n, scale):
        counts = self.t.zeros((max(n, 1),), np.int64)
        if scale and size:
            _launch(k.count_rows, size, flat, counts.buf, n)
        return counts.buf

    def gather_rows(self, weight, indices, skip=-1, scale_by_freq=False):
        t = self.t
        n, d = weight.shape
        flat, bad = self._indices(indices, n)
        if bad >= 0:
            raise IndexError("index out of range in self")
        out = t.empty((indices.size, d), weight.dtype)
        if out.size:
            _launch(k.embedding_gather, out.size, out.buf, weight.buf, weight.offset, weight.element_strides(), flat,
                    n, d, skip, scale_by_freq, self._counts(flat, indices.size, n, scale_by_freq), out.size)
        return t.reshape(out, tuple(indices.shape) + (d,))

    def scatter_add_rows(self, grad, indices, num_weights, skip=-1, scale_by_freq=False):
        t = self.t
        flat, bad = self._indices(indices, num_weights)
        if bad >= 0:
            raise IndexError("index out of range in self")
        d = grad.shape[-1]
        out = t.zeros((num_weights, d), grad.dtype)
        size = indices.size * d
        if size and out.size:
            g = self._c(t.reshape(grad, (indices.size, d)))
            _launch(k.embedding_scatter, size, out.buf, g, flat, num_weights, d, skip, scale_by_freq,
                    self._counts(flat, indices.size, num_weights, scale_by_freq), size)
        return out

    def renorm_rows(self, weight, indices, max_norm, norm_type):
        """``weight`` (2-D) changed in place; every index is checked before any row is touched."""
        n, d = weight.shape
        flat, bad = self._indices(indices, n)
        if bad >= 0:
            raise IndexError(f"select(): index {self._at(flat, bad)} out of range for tensor of size "
                             f"{list(weight.shape)} at dimension 0")
        if indices.size and n:
            mark = self.t.zeros((n,), np.int64)
            _launch(k.mark_rows, indices.size, flat, mark.buf, n)
            _launch(k.renorm_rows, n, weight.buf, weight.offset, weight.element_strides(), mark.buf, n, d,
                    float(max_norm), float(norm_type))
