"""Optimizer update kernels, on raw arrays: one fused pass per parameter.

Each optimizer family is one loop (``_<family>_range``, over a range of elements), run once
over all elements below ``PARALLEL_MIN`` and over chunks in a ``prange`` above. A step
reads the gradient once and updates the parameter and its state arrays in place, instead
of the half-dozen temporaries a chain of tensor ops makes. (The loop is not an inlined
per-element function: called per element with array arguments, Numba's reference
counting made such a step 100 times slower, measured.)

The rules repeat PyTorch's single-tensor formulas operation for operation (``lerp`` with
its two branches, ``addcmul``/``addcdiv`` as ``value * a * b`` and ``value * a / b``), so
that trajectories agree with ``torch.optim`` to rounding. Hyperparameters come in one
array ``h`` of the parameter's dtype (derived scalars such as bias corrections are
computed by the caller in float64 and then cast, as PyTorch's Python code does), so each
kernel compiles once per dtype. Flags are stored in ``h`` as 0 or 1.

Arrays are flat and C-contiguous (``step`` below makes them so); the loops index every
array with the parameter's size, and ``step`` checks that all of them have it. A state a
setting leaves unused (SGD's buffer without momentum) is passed as an empty array and never
read: the flag that would read it is off.
"""
import numpy as np
from numba import njit, prange

from ._cache import guard
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["step", "KERNELS"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_CHUNK = 1 << 14      # elements per parallel task


@njit(inline="always", error_model="numpy")
def _lerp(a, b, w):
    """``torch.lerp``'s formula: exact at both ends."""
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (1 - w)


# -- SGD: h = -lr, weight_decay, momentum, 1-dampening, nesterov, maximize, first (buf = d) -------
@njit(**_JIT)
def _sgd_range(p, g, buf, h, start, stop):
    for i in range(start, stop):
        d = -g[i] if h[5] else g[i]
        if h[1] != 0:
            d = d + h[1] * p[i]
        if h[2] != 0:
            if h[6]:
                b = d
            else:
                b = buf[i] * h[2] + h[3] * d
            buf[i] = b
            d = d + h[2] * b if h[4] else b
        p[i] = p[i] + h[0] * d


@njit(**_JIT)
def _sgd_serial(p, g, buf, h):
    _sgd_range(p, g, buf, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _sgd_parallel(p, g, buf, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _sgd_range(p, g, buf, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- Adam, AdamW: h = 1-lr*wd (the decoupled shrink), 1-beta1, beta2, 1-beta2, sqrt(bias2), eps,
#    -step_size, weight_decay, decoupled, amsgrad, maximize -------------------------------------
@njit(**_JIT)
def _adam_range(p, g, m, v, vmax, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[10] else g[i]
        if h[7] != 0:
            if h[8]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[7] * p[i]
        m[i] = _lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        s = v[i]
        if h[9]:
            if s > vmax[i] or s != s:
                vmax[i] = s
            s = vmax[i]
        p[i] = p[i] + h[6] * m[i] / (np.sqrt(s) / h[4] + h[5])


@njit(**_JIT)
def _adam_serial(p, g, m, v, vmax, h):
    _adam_range(p, g, m, v, vmax, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _adam_parallel(p, g, m, v, vmax, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _adam_range(p, g, m, v, vmax, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- NAdam: h = shrink, beta1 weight, beta2, 1-beta2, bias2, eps, grad coef, avg coef, wd, decoupled,
#    maximize --------------------------------------------------------------------------------------
@njit(**_JIT)
def _nadam_range(p, g, m, v, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[10] else g[i]
        if h[8] != 0:
            if h[9]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[8] * p[i]
        m[i] = _lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        denom = np.sqrt(v[i] / h[4]) + h[5]
        q = p[i] + h[6] * gi / denom
        p[i] = q + h[7] * m[i] / denom


@njit(**_JIT)
def _nadam_serial(p, g, m, v, h):
    _nadam_range(p, g, m, v, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _nadam_parallel(p, g, m, v, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _nadam_range(p, g, m, v, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- RAdam: h = shrink, beta1 weight, beta2, 1-beta2, bias1, lr, bias2_sqrt, eps, rect (0: unrectified
#    step), wd, decoupled, maximize ------------------------------------------------------------------
@njit(**_JIT)
def _radam_range(p, g, m, v, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[11] else g[i]
        if h[9] != 0:
            if h[10]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[9] * p[i]
        m[i] = _lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        u = m[i] / h[4] * h[5]
        if h[8] != 0:
            u = u * (h[6] / (np.sqrt(v[i]) + h[7])) * h[8]
        p[i] = p[i] - u


@njit(**_JIT)
def _radam_serial(p, g, m, v, h):
    _radam_range(p, g, m, v, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _radam_parallel(p, g, m, v, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _radam_range(p, g, m, v, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- Adamax: h = beta1 weight, beta2, eps, -lr/bias1, wd, maximize -----------------------------------
@njit(**_JIT)
def _adamax_range(p, g, m, u, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[5] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        m[i] = _lerp(m[i], gi, h[0])
        a = u[i] * h[1]
        b = abs(gi) + h[2]
        u[i] = a if a >= b or a != a else b
        p[i] = p[i] + h[3] * m[i] / u[i]


@njit(**_JIT)
def _adamax_serial(p, g, m, u, h):
    _adamax_range(p, g, m, u, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _adamax_parallel(p, g, m, u, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _adamax_range(p, g, m, u, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- RMSprop: h = -lr, alpha, 1-alpha, eps, wd, momentum, centered, maximize -------------------------
@njit(**_JIT)
def _rmsprop_range(p, g, v, gavg, buf, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[7] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        v[i] = v[i] * h[1] + h[2] * gi * gi
        if h[6]:
            gavg[i] = _lerp(gavg[i], gi, h[2])
            avg = np.sqrt(v[i] + -gavg[i] * gavg[i]) + h[3]
        else:
            avg = np.sqrt(v[i]) + h[3]
        if h[5] > 0:
            buf[i] = buf[i] * h[5] + gi / avg
            p[i] = p[i] + h[0] * buf[i]
        else:
            p[i] = p[i] + h[0] * gi / avg


@njit(**_JIT)
def _rmsprop_serial(p, g, v, gavg, buf, h):
    _rmsprop_range(p, g, v, gavg, buf, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _rmsprop_parallel(p, g, v, gavg, buf, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _rmsprop_range(p, g, v, gavg, buf, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- Adagrad: h = -clr, eps, wd, maximize -------------------------------------------------------------
@njit(**_JIT)
def _adagrad_range(p, g, s, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[3] else g[i]
        if h[2] != 0:
            gi = gi + h[2] * p[i]
        s[i] = s[i] + gi * gi
        p[i] = p[i] + h[0] * gi / (np.sqrt(s[i]) + h[1])


@njit(**_JIT)
def _adagrad_serial(p, g, s, h):
    _adagrad_range(p, g, s, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _adagrad_parallel(p, g, s, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _adagrad_range(p, g, s, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


# -- Adadelta: h = -lr, rho, 1-rho, eps, wd, maximize ----------------------------------------------------
@njit(**_JIT)
def _adadelta_range(p, g, v, acc, h, start, stop):
    for i in range(start, stop):
        gi = -g[i] if h[5] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        v[i] = v[i] * h[1] + h[2] * gi * gi
        delta = np.sqrt(acc[i] + h[3]) / np.sqrt(v[i] + h[3]) * gi
        acc[i] = acc[i] * h[1] + h[2] * delta * delta
        p[i] = p[i] + h[0] * delta


@njit(**_JIT)
def _adadelta_serial(p, g, v, acc, h):
    _adadelta_range(p, g, v, acc, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _adadelta_parallel(p, g, v, acc, h):
    n = p.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _adadelta_range(p, g, v, acc, h, c * _CHUNK, min(n, (c + 1) * _CHUNK))


KERNELS = {
    "sgd": (_sgd_serial, _sgd_parallel),
    "adam": (_adam_serial, _adam_parallel),
    "nadam": (_nadam_serial, _nadam_parallel),
    "radam": (_radam_serial, _radam_parallel),
    "adamax": (_adamax_serial, _adamax_parallel),
    "rmsprop": (_rmsprop_serial, _rmsprop_parallel),
    "adagrad": (_adagrad_serial, _adagrad_parallel),
    "adadelta": (_adadelta_serial, _adadelta_parallel),
}


def _in_place(a, dtype):
    return a.flags.c_contiguous and a.dtype == dtype


def step(family, param, grad, states, hyper):
    """Update ``param`` and the ``states`` arrays (all of ``param``'s shape) in place with
    ``family``'s rule for gradient ``grad``; ``hyper`` is the rule's scalars in order."""
    n = param.size
    for a in (grad, *states):
        if a is not None and a.size != n:
            raise RuntimeError(f"optimizer step: a state or gradient of {a.size} elements for a parameter of "
                               f"{n} elements")
    writable = (param, *[np.empty(0, param.dtype) if a is None else a for a in states])
    # a flat view of each array, or a contiguous copy of the parameter's dtype, written back after
    flats = [a.reshape(-1) if _in_place(a, param.dtype) else np.ascontiguousarray(a, param.dtype).reshape(-1)
             for a in writable]
    g = np.ascontiguousarray(grad, param.dtype).reshape(-1)
    h = np.array(hyper, dtype=param.dtype)
    serial, parallel = KERNELS[family]
    args = (flats[0], g, *flats[1:], h)
    if n >= PARALLEL_MIN:
        with parallel_lock:
            parallel(*args)
    else:
        serial(*args)
    for a, f in zip(writable, flats):
        if not _in_place(a, param.dtype):
            a[...] = f.reshape(a.shape)


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
