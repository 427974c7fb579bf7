"""Convolution kernels, on raw arrays: im2col + one BLAS product per group.

Every convolution is seen as 2-D (a 1-D one has ``H = 1``). ``im2col`` lays the input out
as ``cols[(c, i, j), (n, oh, ow)]`` (one row per channel and kernel tap, one column per
output position of the whole batch), so that the forward is ``W_g @ cols_g`` for each group
``g``: one large product over the batch, where BLAS is fastest. Measured against a direct
Numba loop on the ``cnn_step`` workload's convolutions (``python -m benchmarks.conv_direct``,
one thread): 0.48 vs 0.79 ms (1->8 channels, 28x28) and 0.72 vs 4.6 ms (8->16, 13x13).
Padding is read as zeros by bounds checks in the loops, never materialised; asymmetric
padding (``padding='same'`` with an even extent) is a lower padding in the loops plus a
larger output.

The backward is the same layout in reverse: the output gradient is transposed to
``(O, N*L)`` (the bias gradient summed in that pass), ``dW_g = go_g @ cols_g.T`` and
``dcols_g = W_g.T @ go_g``, which ``col2im`` adds back into the input's positions.

Loops over channels run in parallel for large arrays (each channel's rows and input plane
are its own, so no two iterations write the same element). No loop indexes outside its
arrays: every position is checked against the input's extent.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["out_size", "im2col", "forward", "transposed", "input_grad", "weight_grad", "bias_grad"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def out_size(size, k, stride, pad_lo, pad_hi, dilation):
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


# -- im2col / col2im ------------------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _inside(off, stride, size, out_size):
    """The outputs ``[lo, hi)`` whose input position ``o * stride + off`` lies in ``[0, size)``:
    the loops copy those without a check per element (so they vectorise) and zero the rest."""
    lo = min(out_size, -(off // stride)) if off < 0 else 0          # ceil(-off / stride)
    hi = min(out_size, (size - 1 - off) // stride + 1) if size - 1 - off >= 0 else 0
    return lo, max(lo, hi)


@njit(inline="always", error_model="numpy")
def _im2col_channel(c, cols, x, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    n_, _, h_, w_ = x.shape
    L = oh_ * ow_
    for i in range(kh):
        for j in range(kw):
            r = (c * kh + i) * kw + j
            off = j * dw - pw
            lo, hi = _inside(off, sw, w_, ow_)
            for n in range(n_):
                for oh in range(oh_):
                    base = n * L + oh * ow_
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h_:
                        for ow in range(ow_):
                            cols[r, base + ow] = 0
                    else:
                        for ow in range(lo):
                            cols[r, base + ow] = 0
                        for ow in range(lo, hi):
                            cols[r, base + ow] = x[n, c, ih, ow * sw + off]
                        for ow in range(hi, ow_):
                            cols[r, base + ow] = 0


@njit(**_JIT)
def _im2col_s(cols, x, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    for c in range(x.shape[1]):
        _im2col_channel(c, cols, x, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, **_JIT)
def _im2col_p(cols, x, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    for c in prange(x.shape[1]):
        _im2col_channel(c, cols, x, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw)


@njit(inline="always", error_model="numpy")
def _col2im_channel(c, dx, cols, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    n_, _, h_, w_ = dx.shape
    L = oh_ * ow_
    for n in range(n_):
        for ih in range(h_):
            for iw in range(w_):
                dx[n, c, ih, iw] = 0
    for i in range(kh):
        for j in range(kw):
            r = (c * kh + i) * kw + j
            off = j * dw - pw
            lo, hi = _inside(off, sw, w_, ow_)
            for n in range(n_):
                for oh in range(oh_):
                    ih = oh * sh - ph + i * dh
                    if 0 <= ih < h_:
                        base = n * L + oh * ow_
                        for ow in range(lo, hi):
                            dx[n, c, ih, ow * sw + off] += cols[r, base + ow]


@njit(**_JIT)
def _col2im_s(dx, cols, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    for c in range(dx.shape[1]):
        _col2im_channel(c, dx, cols, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, **_JIT)
def _col2im_p(dx, cols, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw):
    for c in prange(dx.shape[1]):
        _col2im_channel(c, dx, cols, kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw)


# -- the products and the (N, O, L) <-> (O, N*L) transposes ---------------------------------
@njit(**_JIT)
def _gemm_groups(out, w, cols, groups, ta, tb):
    """``out_g = op(w_g) @ op(cols_g)`` for each group, ``op`` a transpose where flagged;
    ``w``, ``cols`` and ``out`` (C-contiguous) are each split into ``groups`` row blocks."""
    ro = out.shape[0] // groups
    rw = w.shape[0] // groups
    rc = cols.shape[0] // groups
    for g in range(groups):
        o = out[g * ro:(g + 1) * ro]
        a = w[g * rw:(g + 1) * rw]
        b = cols[g * rc:(g + 1) * rc]
        if ta:
            if tb:
                np.dot(a.T, b.T, o)
            else:
                np.dot(a.T, b, o)
        elif tb:
            np.dot(a, b.T, o)
        else:
            np.dot(a, b, o)


@njit(**_JIT)
def _untranspose(out, t, bias, has_bias):
    """``out[n, o, l] = t[o, n*L + l] (+ bias[o])``."""
    n_, o_, l_ = out.shape
    for n in range(n_):
        for o in range(o_):
            b = bias[o] if has_bias else 0
            for l in range(l_):
                out[n, o, l] = t[o, n * l_ + l] + b


@njit(**_JIT)
def _transpose(t, db, go, want_db):
    """``t[o, n*L + l] = go[n, o, l]``, and where wanted the bias gradient ``db[o]`` (the sum
    over ``n`` and ``l``, in float64) in the same pass."""
    n_, o_, l_ = go.shape
    acc = np.zeros(o_)
    for n in range(n_):
        for o in range(o_):
            s = 0.0
            for l in range(l_):
                g = go[n, o, l]
                t[o, n * l_ + l] = g
                s += g
            acc[o] += s
    if want_db:
        for o in range(o_):
            db[o] = acc[o]


@njit(**_JIT)
def _bias_grad(db, go):
    """``db[o] = sum over n, l of go[n, o, l]``, accumulated in float64."""
    n_, o_, l_ = go.shape
    for o in range(o_):
        s = 0.0
        for n in range(n_):
            for l in range(l_):
                s += go[n, o, l]
        db[o] = s


def _launch(serial, parallel, size, *args):
    if size >= PARALLEL_MIN:
        with parallel_lock:
            parallel(*args)
    else:
        serial(*args)


def _geometry(x_shape, w_shape, stride, pad_lo, pad_hi, dilation):
    kh, kw = w_shape[2:]
    oh = out_size(x_shape[2], kh, stride[0], pad_lo[0], pad_hi[0], dilation[0])
    ow = out_size(x_shape[3], kw, stride[1], pad_lo[1], pad_hi[1], dilation[1])
    return (kh, kw, oh, ow, stride[0], stride[1], pad_lo[0], pad_lo[1], dilation[0], dilation[1])


def im2col(x, w_shape, stride, pad_lo, pad_hi, dilation):
    """``x`` (N, C, H, W) as ``cols`` (C*kh*kw, N*OH*OW)."""
    geo = _geometry(x.shape, w_shape, stride, pad_lo, pad_hi, dilation)
    kh, kw, oh, ow = geo[:4]
    cols = np.empty((x.shape[1] * kh * kw, x.shape[0] * oh * ow), x.dtype)
    if cols.size:
        _launch(_im2col_s, _im2col_p, cols.size, cols, np.ascontiguousarray(x), *geo)
    return cols


def forward(x, w, b, stride, pad_lo, pad_hi, dilation, groups):
    """The convolution of ``x`` (N, C, H, W) with ``w`` (O, C/groups, kh, kw), plus ``b``
    (O,) or None: returns the output (N, O, OH, OW) and the ``cols`` that the weight
    gradient reads again."""
    n, o = x.shape[0], w.shape[0]
    geo = _geometry(x.shape, w.shape, stride, pad_lo, pad_hi, dilation)
    oh, ow = geo[2:4]
    cols = im2col(x, w.shape, stride, pad_lo, pad_hi, dilation)
    out = np.empty((n, o, oh, ow), x.dtype)
    if out.size == 0:
        return out, cols
    t = np.empty((o, n * oh * ow), x.dtype)
    if cols.shape[0] == 0:
        t[...] = 0
    else:
        _gemm_groups(t, np.ascontiguousarray(w).reshape(o, cols.shape[0] // groups), cols, groups, False, False)
    has_bias = b is not None
    _untranspose(out.reshape(n, o, oh * ow), t, b if has_bias else t[:, 0], has_bias)
    return out, cols


def transposed(go, want_db=False):
    """The output gradient (N, O, OH, OW) as ``(O, N*OH*OW)``, the layout both gradient products
    read, and the bias gradient (or None) summed in the same pass."""
    n, o = go.shape[:2]
    t = np.empty((o, go.shape[2] * go.shape[3] * n), go.dtype)
    db = np.empty(o if want_db else 0, go.dtype)
    _transpose(t, db, np.ascontiguousarray(go).reshape(n, o, go.shape[2] * go.shape[3]), want_db)
    return t, (db if want_db else None)


def _check_grad(go, shape):
    """The loops trust their operands' shapes: a saved tensor replaced through ``.data`` by one
    of another shape must stop here, not read out of bounds."""
    if tuple(go.shape) != tuple(shape):
        raise RuntimeError(f"convolution backward: expected a gradient of shape {list(shape)}, but got "
                           f"{list(go.shape)} (was a saved tensor replaced through .data?)")


def input_grad(go, w, x_shape, stride, pad_lo, pad_hi, dilation, groups, go_t=None):
    """The gradient of the input (``x_shape``) for output gradient ``go`` (or its ``transposed``
    form ``go_t``): ``col2im(W^T @ go)``."""
    o = w.shape[0]
    geo = _geometry(x_shape, w.shape, stride, pad_lo, pad_hi, dilation)
    _check_grad(go, (x_shape[0], o, geo[2], geo[3]))
    dcols = np.empty((x_shape[1] * geo[0] * geo[1], go.shape[2] * go.shape[3] * x_shape[0]), go.dtype)
    if dcols.size and o:
        if go_t is None:
            go_t = transposed(go)[0]
        _gemm_groups(dcols, np.ascontiguousarray(w).reshape(o, dcols.shape[0] // groups), go_t, groups, True, False)
    elif dcols.size:
        dcols[...] = 0
    dx = np.empty(x_shape, go.dtype)
    if dx.size:
        _launch(_col2im_s, _col2im_p, dx.size, dx, dcols, *geo)
    return dx


def weight_grad(cols, go, w_shape, groups, go_t=None):
    """The gradient of the weight (``w_shape``) from the input's ``cols`` and ``go`` (or its
    ``transposed`` form ``go_t``): ``go_g @ cols_g^T`` per group."""
    dw = np.empty((w_shape[0], int(np.prod(w_shape[1:]))), go.dtype)
    if dw.size == 0:
        return dw.reshape(w_shape)
    if cols.shape[1] == 0:
        dw[...] = 0
    else:
        _gemm_groups(dw, transposed(go)[0] if go_t is None else go_t, cols, groups, False, True)
    return dw.reshape(w_shape)


def bias_grad(go):
    n, o = go.shape[:2]
    db = np.empty(o, go.dtype)
    _bias_grad(db, np.ascontiguousarray(go).reshape(n, o, go.shape[2] * go.shape[3]))
    return db


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
