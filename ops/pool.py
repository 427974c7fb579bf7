"""Pooling kernels, on raw arrays ``(P, H, W)``: ``P`` planes (batch times channels), each
pooled on its own, so the loops run in parallel over planes for large arrays.

Max pooling keeps, per output, the flat index (``ih * W + iw``) of the maximum within its
plane, as PyTorch does: the backward adds each output gradient at its index, and the
backward's own backward reads the gradient back at the same indices. A NaN wins the
maximum (it propagates), and padding is never a candidate (windows are clipped).

Average pooling (plain and adaptive) is one kernel over explicit windows: output row ``oh``
reads input rows ``[hs[oh], he[oh])`` and divides by ``hd[oh]``; columns likewise. Every
divisor PyTorch uses (with or without the padding, an override, adaptive windows) is such
a product of a row and a column factor, worked out by the caller. The backward spreads each
output gradient over its window with the same divisor, and is itself linear, so its own
backward is the forward again.

Every index is checked against the plane before it is used: a saved index changed through
``.data`` gives its position back to the caller instead of a write out of bounds.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["pool_out_size", "max_forward", "max_backward", "max_gather", "avg_forward", "avg_backward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def pool_out_size(size, k, pad, stride, dilation, ceil_mode):
    """PyTorch's ``pooling_output_shape``: with ``ceil_mode`` a last window may start in the
    right padding only if it starts inside the input or the left padding."""
    out = (size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _launch(serial, parallel, size, *args):
    if size >= PARALLEL_MIN:
        with parallel_lock:
            return parallel(*args)
    return serial(*args)


# -- max ------------------------------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _max_plane(p, out, idx, x, kh, kw, sh, sw, ph, pw, dh, dw):
    _, h_, w_ = x.shape
    _, oh_, ow_ = out.shape
    for oh in range(oh_):
        h0 = oh * sh - ph
        while h0 < 0:
            h0 += dh
        h1 = min(oh * sh - ph + (kh - 1) * dh + 1, h_)
        for ow in range(ow_):
            w0 = ow * sw - pw
            while w0 < 0:
                w0 += dw
            w1 = min(ow * sw - pw + (kw - 1) * dw + 1, w_)
            best = -np.inf
            at = h0 * w_ + w0
            for ih in range(h0, h1, dh):
                for iw in range(w0, w1, dw):
                    v = x[p, ih, iw]
                    if v > best or np.isnan(v):
                        best = v
                        at = ih * w_ + iw
            out[p, oh, ow] = best
            idx[p, oh, ow] = at


@njit(**_JIT)
def _max_s(out, idx, x, kh, kw, sh, sw, ph, pw, dh, dw):
    for p in range(x.shape[0]):
        _max_plane(p, out, idx, x, kh, kw, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, **_JIT)
def _max_p(out, idx, x, kh, kw, sh, sw, ph, pw, dh, dw):
    for p in prange(x.shape[0]):
        _max_plane(p, out, idx, x, kh, kw, sh, sw, ph, pw, dh, dw)


@njit(inline="always", error_model="numpy")
def _scatter_plane(p, dx, go, idx):
    """Returns the flat position (within ``go``) of the first index out of range, or -1."""
    _, h_, w_ = dx.shape
    _, oh_, ow_ = go.shape
    for i in range(h_):
        for j in range(w_):
            dx[p, i, j] = 0
    for oh in range(oh_):
        for ow in range(ow_):
            k = idx[p, oh, ow]
            if k < 0 or k >= h_ * w_:
                return (p * oh_ + oh) * ow_ + ow
            dx[p, k // w_, k % w_] += go[p, oh, ow]
    return -1


@njit(**_JIT)
def _scatter_s(dx, go, idx):
    for p in range(dx.shape[0]):
        bad = _scatter_plane(p, dx, go, idx)
        if bad >= 0:
            return bad
    return -1


@njit(parallel=True, **_JIT)
def _scatter_p(dx, go, idx):
    bad = -1
    for p in prange(dx.shape[0]):
        bad = max(bad, _scatter_plane(p, dx, go, idx))
    return bad


@njit(**_JIT)
def _gather(out, g, idx):
    """``out[p, o] = g[p, idx[p, o]]`` (flat over the plane); -1 or a bad index's position."""
    _, h_, w_ = g.shape
    _, oh_, ow_ = out.shape
    for p in range(out.shape[0]):
        for oh in range(oh_):
            for ow in range(ow_):
                k = idx[p, oh, ow]
                if k < 0 or k >= h_ * w_:
                    return (p * oh_ + oh) * ow_ + ow
                out[p, oh, ow] = g[p, k // w_, k % w_]
    return -1


def max_forward(x, out_hw, kernel, stride, padding, dilation):
    """Max pooling of ``x`` (P, H, W); returns the output (P, OH, OW) and int64 indices."""
    out = np.empty((x.shape[0], *out_hw), x.dtype)
    idx = np.empty(out.shape, np.int64)
    if out.size:
        _launch(_max_s, _max_p, x.size, out, idx, np.ascontiguousarray(x), *kernel, *stride, *padding, *dilation)
    return out, idx


def _check_shape(a, shape, what):
    """The loops trust their operands' shapes: a saved tensor replaced through ``.data`` by one
    of another shape must stop here, not read out of bounds."""
    if tuple(a.shape) != tuple(shape):
        raise RuntimeError(f"pooling backward: expected {what} of shape {list(shape)}, but got {list(a.shape)} "
                           "(was a saved tensor replaced through .data?)")


def _bad_index(idx, bad, size):
    raise RuntimeError(f"index {idx.reshape(-1)[bad]} is out of bounds for a pooled plane of {size} elements")


def max_backward(go, idx, in_hw):
    """The input gradient (P, H, W): each output gradient added at its saved index."""
    _check_shape(idx, go.shape, "indices")
    dx = np.empty((go.shape[0], *in_hw), go.dtype)
    if dx.size:
        idx = np.ascontiguousarray(idx)
        bad = _launch(_scatter_s, _scatter_p, dx.size, dx, np.ascontiguousarray(go), idx)
        if bad >= 0:
            _bad_index(idx, bad, in_hw[0] * in_hw[1])
    return dx


def max_gather(g, idx):
    """``g`` (P, H, W) read at the indices: the backward of ``max_backward``."""
    _check_shape(idx, (g.shape[0], *idx.shape[1:]), "indices")
    out = np.empty(idx.shape, g.dtype)
    if out.size:
        idx = np.ascontiguousarray(idx)
        bad = _gather(out, np.ascontiguousarray(g), idx)
        if bad >= 0:
            _bad_index(idx, bad, g.shape[1] * g.shape[2])
    return out


# -- average over explicit windows ------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _avg_plane(p, out, x, hs, he, hd, ws, we, wd):
    _, h_, w_ = x.shape
    _, oh_, ow_ = out.shape
    for oh in range(oh_):
        h0, h1 = max(hs[oh], 0), min(he[oh], h_)
        for ow in range(ow_):
            w0, w1 = max(ws[ow], 0), min(we[ow], w_)
            s = 0.0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s += x[p, ih, iw]
            out[p, oh, ow] = s / (hd[oh] * wd[ow])


@njit(**_JIT)
def _avg_s(out, x, hs, he, hd, ws, we, wd):
    for p in range(x.shape[0]):
        _avg_plane(p, out, x, hs, he, hd, ws, we, wd)


@njit(parallel=True, **_JIT)
def _avg_p(out, x, hs, he, hd, ws, we, wd):
    for p in prange(x.shape[0]):
        _avg_plane(p, out, x, hs, he, hd, ws, we, wd)


@njit(inline="always", error_model="numpy")
def _avg_back_plane(p, dx, go, hs, he, hd, ws, we, wd):
    _, h_, w_ = dx.shape
    _, oh_, ow_ = go.shape
    for i in range(h_):
        for j in range(w_):
            dx[p, i, j] = 0
    for oh in range(oh_):
        h0, h1 = max(hs[oh], 0), min(he[oh], h_)
        for ow in range(ow_):
            w0, w1 = max(ws[ow], 0), min(we[ow], w_)
            g = go[p, oh, ow] / (hd[oh] * wd[ow])
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    dx[p, ih, iw] += g


@njit(**_JIT)
def _avg_back_s(dx, go, hs, he, hd, ws, we, wd):
    for p in range(dx.shape[0]):
        _avg_back_plane(p, dx, go, hs, he, hd, ws, we, wd)


@njit(parallel=True, **_JIT)
def _avg_back_p(dx, go, hs, he, hd, ws, we, wd):
    for p in prange(dx.shape[0]):
        _avg_back_plane(p, dx, go, hs, he, hd, ws, we, wd)


def avg_forward(x, windows):
    """Average of ``x`` (P, H, W) over ``windows`` = (hs, he, hd, ws, we, wd): int64 window
    bounds (clipped to the plane here) and float64 divisors per output row and column."""
    out = np.empty((x.shape[0], windows[0].size, windows[3].size), x.dtype)
    if out.size:
        _launch(_avg_s, _avg_p, x.size, out, np.ascontiguousarray(x), *windows)
    return out


def avg_backward(go, windows, in_hw):
    _check_shape(go, (go.shape[0], windows[0].size, windows[3].size), "a gradient")
    dx = np.empty((go.shape[0], *in_hw), go.dtype)
    if dx.size:
        _launch(_avg_back_s, _avg_back_p, dx.size, dx, np.ascontiguousarray(go), *windows)
    return dx


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
