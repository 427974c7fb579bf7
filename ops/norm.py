"""Normalisation kernels, on raw arrays: batch norm over ``(N, C, L)`` (statistics per
channel ``c``, over ``n`` and ``l``), and row norm over ``(R, M)`` (statistics per row: layer
norm's rows, or group norm's ``(n, group)`` rows), each as one pass for the statistics, one
for the output, and a backward in the usual two-reduction form:

    dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))

Statistics accumulate in float64, shifted by a value of their own set (its first element),
so that one pass gives the variance without the cancellation of a raw sum of squares.

Row norm's affine parameters are indexed per element by ``a = (r % G) * Cg + m // L``
(``G`` groups of ``Cg`` channels of ``L`` elements each): layer norm is ``G = 1, L = 1``
(one weight per column), group norm the channel of the element. The parameter gradients are
sums over rows, so they are added up serially (a write per column), while the statistics
and ``dx`` run in parallel over rows or channels for large arrays.
"""
import math

import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["batch_forward", "batch_backward", "row_forward", "row_backward"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def _launch(serial, parallel, size, *args):
    if size >= PARALLEL_MIN:
        with parallel_lock:
            return parallel(*args)
    return serial(*args)


# -- batch norm -------------------------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _bn_channel(c, out, x, mean, invstd, var, w, b, has_w, has_b, train, eps):
    """Training: the channel's mean, biased variance and 1/std first; then the output."""
    n_, _, l_ = x.shape
    if train:
        k = x[0, c, 0]
        s1 = 0.0
        s2 = 0.0
        for n in range(n_):
            for l in range(l_):
                d = x[n, c, l] - k
                s1 += d
                s2 += d * d
        m = n_ * l_
        mu = s1 / m
        v = max(s2 / m - mu * mu, 0.0)
        mean[c] = k + mu
        var[c] = v
        invstd[c] = 1.0 / math.sqrt(v + eps)
    mu = mean[c]
    istd = invstd[c]
    scale = istd * (w[c] if has_w else 1.0)
    shift = (b[c] if has_b else 0.0) - mu * scale
    for n in range(n_):
        for l in range(l_):
            out[n, c, l] = x[n, c, l] * scale + shift


@njit(**_JIT)
def _bn_s(out, x, mean, invstd, var, w, b, has_w, has_b, train, eps):
    for c in range(x.shape[1]):
        _bn_channel(c, out, x, mean, invstd, var, w, b, has_w, has_b, train, eps)


@njit(parallel=True, **_JIT)
def _bn_p(out, x, mean, invstd, var, w, b, has_w, has_b, train, eps):
    for c in prange(x.shape[1]):
        _bn_channel(c, out, x, mean, invstd, var, w, b, has_w, has_b, train, eps)


@njit(inline="always", error_model="numpy")
def _bn_back_channel(c, dx, dw, db, go, x, mean, invstd, w, has_w, train, need_dx):
    n_, _, l_ = x.shape
    mu = mean[c]
    istd = invstd[c]
    sdy = 0.0
    sdyx = 0.0
    for n in range(n_):
        for l in range(l_):
            g = go[n, c, l]
            sdy += g
            sdyx += g * (x[n, c, l] - mu)
    db[c] = sdy
    dw[c] = sdyx * istd
    if need_dx:
        wc = w[c] if has_w else 1.0
        m = n_ * l_
        if train:
            a = sdy / m
            k = sdyx / m * istd * istd
        else:
            a = 0.0
            k = 0.0
        for n in range(n_):
            for l in range(l_):
                dx[n, c, l] = (go[n, c, l] - a - (x[n, c, l] - mu) * k) * istd * wc


@njit(**_JIT)
def _bn_back_s(dx, dw, db, go, x, mean, invstd, w, has_w, train, need_dx):
    for c in range(x.shape[1]):
        _bn_back_channel(c, dx, dw, db, go, x, mean, invstd, w, has_w, train, need_dx)


@njit(parallel=True, **_JIT)
def _bn_back_p(dx, dw, db, go, x, mean, invstd, w, has_w, train, need_dx):
    for c in prange(x.shape[1]):
        _bn_back_channel(c, dx, dw, db, go, x, mean, invstd, w, has_w, train, need_dx)


def _check(go, x, stats, n_stats, w, n_params):
    """The loops trust their operands' shapes: a saved tensor replaced through ``.data`` by one
    of another shape must stop here, not read out of bounds."""
    if go.shape != x.shape or stats.size != n_stats or (w is not None and w.size != n_params):
        raise RuntimeError(f"normalisation backward: the gradient {list(go.shape)}, input {list(x.shape)}, "
                           f"statistics ({stats.size}) and weight ({None if w is None else w.size}) do not fit "
                           "together (was a saved tensor replaced through .data?)")


def _vec(a, c, dtype):
    return (np.empty(c, dtype) if a is None else np.ascontiguousarray(a).reshape(-1)), a is not None


def batch_forward(x, w, b, running_mean, running_var, train, momentum, eps):
    """Batch norm of ``x`` (N, C, L). Training: returns the output and the batch's mean and
    1/std (float64, per channel), and updates the running statistics in place (the variance
    unbiased) when given; evaluation: normalises with the running statistics."""
    c = x.shape[1]
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, x.dtype)
    var = np.empty(c)
    if train:
        mean, invstd = np.empty(c), np.empty(c)
    else:
        mean = running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    w_, has_w = _vec(w, c, x.dtype)
    b_, has_b = _vec(b, c, x.dtype)
    if x.size:
        _launch(_bn_s, _bn_p, x.size, out, x, mean, invstd, var, w_, b_, has_w, has_b, train, eps)
    elif train:                      # an empty batch: no statistics, running ones untouched (as PyTorch)
        mean[:], var[:], invstd[:] = math.nan, math.nan, math.nan
    if train and x.size:
        if running_mean is not None:
            m = x.size // c if c else 0
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * (m / (m - 1) if m > 1 else math.nan)
    return out, mean, invstd


def batch_backward(go, x, w, mean, invstd, train, need_dx):
    """``dx`` (None unless ``need_dx``), ``dw`` and ``db`` (per channel) for output gradient
    ``go``, from the ``mean`` and ``invstd`` the forward used."""
    c = x.shape[1]
    _check(go, x, mean, c, w, c)
    x = np.ascontiguousarray(x)
    dx = np.empty(x.shape, go.dtype) if need_dx else np.empty((0, c, 0), go.dtype)
    dw, db = np.empty(c, go.dtype), np.empty(c, go.dtype)
    w_, has_w = _vec(w, c, x.dtype)
    if c:
        _launch(_bn_back_s, _bn_back_p, x.size, dx, dw, db, np.ascontiguousarray(go), x, mean, invstd, w_,
                has_w, train, need_dx)
    return (dx if need_dx else None), dw, db


# -- row norm (layer norm, group norm) -------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _row(r, out, x, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps):
    m_ = x.shape[1]
    k = x[r, 0]
    s1 = 0.0
    s2 = 0.0
    for m in range(m_):
        d = x[r, m] - k
        s1 += d
        s2 += d * d
    mu = s1 / m_
    var = max(s2 / m_ - mu * mu, 0.0)
    mu += k
    istd = 1.0 / math.sqrt(var + eps)
    mean[r] = mu
    invstd[r] = istd
    g0 = (r % groups) * cg
    for m in range(m_):
        a = g0 + m // l_
        v = (x[r, m] - mu) * istd
        if has_w:
            v *= w[a]
        if has_b:
            v += b[a]
        out[r, m] = v


@njit(**_JIT)
def _row_s(out, x, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps):
    for r in range(x.shape[0]):
        _row(r, out, x, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps)


@njit(parallel=True, **_JIT)
def _row_p(out, x, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps):
    for r in prange(x.shape[0]):
        _row(r, out, x, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps)


@njit(inline="always", error_model="numpy")
def _row_back(r, dx, go, x, mean, invstd, w, has_w, groups, cg, l_):
    m_ = x.shape[1]
    mu = mean[r]
    istd = invstd[r]
    g0 = (r % groups) * cg
    s1 = 0.0
    s2 = 0.0
    for m in range(m_):
        g = go[r, m] * (w[g0 + m // l_] if has_w else 1.0)
        s1 += g
        s2 += g * (x[r, m] - mu) * istd
    s1 /= m_
    s2 /= m_
    for m in range(m_):
        g = go[r, m] * (w[g0 + m // l_] if has_w else 1.0)
        dx[r, m] = (g - s1 - (x[r, m] - mu) * istd * s2) * istd


@njit(**_JIT)
def _row_back_s(dx, go, x, mean, invstd, w, has_w, groups, cg, l_):
    for r in range(x.shape[0]):
        _row_back(r, dx, go, x, mean, invstd, w, has_w, groups, cg, l_)


@njit(parallel=True, **_JIT)
def _row_back_p(dx, go, x, mean, invstd, w, has_w, groups, cg, l_):
    for r in prange(x.shape[0]):
        _row_back(r, dx, go, x, mean, invstd, w, has_w, groups, cg, l_)


@njit(**_JIT)
def _row_param_grads(dw, db, go, x, mean, invstd, groups, cg, l_):
    """``dw[a] += go * xhat``, ``db[a] += go`` over every element of parameter ``a``."""
    acc_w = np.zeros(dw.shape[0])
    acc_b = np.zeros(db.shape[0])
    r_, m_ = x.shape
    for r in range(r_):
        mu = mean[r]
        istd = invstd[r]
        g0 = (r % groups) * cg
        for m in range(m_):
            a = g0 + m // l_
            g = go[r, m]
            acc_w[a] += g * (x[r, m] - mu) * istd
            acc_b[a] += g
    for a in range(dw.shape[0]):
        dw[a] = acc_w[a]
        db[a] = acc_b[a]


def row_forward(x, w, b, groups, cg, l_, eps):
    """Normalise each row of ``x`` (R, M); ``w``/``b`` (or None) per parameter index (see the
    module's note). Returns the output and the rows' mean and 1/std (float64)."""
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, x.dtype)
    mean, invstd = np.empty(x.shape[0]), np.empty(x.shape[0])
    n_params = groups * cg
    w_, has_w = _vec(w, n_params, x.dtype)
    b_, has_b = _vec(b, n_params, x.dtype)
    if x.size:
        _launch(_row_s, _row_p, x.size, out, x, mean, invstd, w_, b_, has_w, has_b, groups, cg, l_, eps)
    elif x.shape[0]:
        mean[:], invstd[:] = math.nan, math.nan
    return out, mean, invstd


def row_backward(go, x, w, mean, invstd, groups, cg, l_, need_dx, need_params):
    """``dx`` (R, M) and the parameter gradients (``groups * cg`` each), each None when not wanted."""
    _check(go, x, mean, x.shape[0] if x.shape[1] == cg * l_ else -1, w, groups * cg)
    x = np.ascontiguousarray(x)
    go = np.ascontiguousarray(go)
    w_, has_w = _vec(w, groups * cg, x.dtype)
    dx = dw = db = None
    if need_dx:
        dx = np.empty(x.shape, go.dtype)
        if x.size:
            _launch(_row_back_s, _row_back_p, x.size, dx, go, x, mean, invstd, w_, has_w, groups, cg, l_)
    if need_params:
        dw, db = np.empty(groups * cg, go.dtype), np.empty(groups * cg, go.dtype)
        _row_param_grads(dw, db, go, x, mean, invstd, groups, cg, l_)
    return dx, dw, db


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
