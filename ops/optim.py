"""Optimizer update rules, written once as per-element source text, and the CPU loops
generated from them (the CUDA target generates its kernels from the same text:
``targets/cuda_optim.py``).

Each family's ``RULES`` entry is the update of element ``i``: it reads the gradient
``g[i]`` once and updates the parameter ``p[i]`` and the family's state arrays in place,
instead of the half-dozen temporaries a chain of tensor ops makes. On the CPU the text
becomes one loop over a range of elements, run once over all elements below
``PARALLEL_MIN`` and over chunks in a ``prange`` above; on CUDA, the body of a kernel with
one thread per element. (The rule is text, not an inlined per-element function: called
per element with array arguments, Numba's reference counting made such a step 100 times
slower, measured.)

The rules repeat PyTorch's single-tensor formulas operation for operation (``lerp`` with
its two branches, ``addcmul``/``addcdiv`` as ``value * a * b`` and ``value * a / b``), so
that trajectories agree with ``torch.optim`` to rounding. ``sqrt`` is NumPy's on the CPU and
``math.sqrt`` on CUDA (numba-cuda has no ``np.sqrt`` loop): both correctly rounded in the
array's dtype. Hyperparameters come in one
array ``h`` of the parameter's dtype (derived scalars such as bias corrections are
computed by the caller in float64 and then cast, as PyTorch's Python code does), so each
kernel compiles once per dtype; CUDA gets the same values as a tuple, by value. Flags are
stored in ``h`` as 0 or 1.

Arrays are flat and C-contiguous (``step`` below makes them so); the loops index every
array with the parameter's size, and ``check_sizes`` checks that all of them have it. A
state a setting leaves unused (SGD's buffer without momentum) is passed as an empty array
and never read: the flag that would read it is off.
"""
import functools
import re
import textwrap
from collections import namedtuple

import numpy as np

from ._cache import load_module
from .elementwise import PARALLEL_MIN, parallel_lock

__all__ = ["step", "check_sizes", "RULES", "LERP", "kernels", "hyper_count"]

_CHUNK = 1 << 14      # elements per parallel task

Rule = namedtuple("Rule", "states body")

# ``torch.lerp``'s formula (exact at both ends), a scalar function the rules call as ``lerp``
LERP = '''\
def lerp(a, b, w):
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (1 - w)
'''

RULES = {
    # h = -lr, weight_decay, momentum, 1-dampening, nesterov, maximize, first (buf = d)
    "sgd": Rule(("buf",), '''
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
    '''),
    # Adam, AdamW: h = 1-lr*wd (the decoupled shrink), 1-beta1, beta2, 1-beta2, sqrt(bias2), eps,
    # -step_size, weight_decay, decoupled, amsgrad, maximize
    "adam": Rule(("m", "v", "vmax"), '''
        gi = -g[i] if h[10] else g[i]
        if h[7] != 0:
            if h[8]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[7] * p[i]
        m[i] = lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        s = v[i]
        if h[9]:
            if s > vmax[i] or s != s:
                vmax[i] = s
            s = vmax[i]
        p[i] = p[i] + h[6] * m[i] / (sqrt(s) / h[4] + h[5])
    '''),
    # h = shrink, beta1 weight, beta2, 1-beta2, bias2, eps, grad coef, avg coef, wd, decoupled, maximize
    "nadam": Rule(("m", "v"), '''
        gi = -g[i] if h[10] else g[i]
        if h[8] != 0:
            if h[9]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[8] * p[i]
        m[i] = lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        denom = sqrt(v[i] / h[4]) + h[5]
        q = p[i] + h[6] * gi / denom
        p[i] = q + h[7] * m[i] / denom
    '''),
    # h = shrink, beta1 weight, beta2, 1-beta2, bias1, lr, bias2_sqrt, eps, rect (0: unrectified step),
    # wd, decoupled, maximize
    "radam": Rule(("m", "v"), '''
        gi = -g[i] if h[11] else g[i]
        if h[9] != 0:
            if h[10]:
                p[i] = p[i] * h[0]
            else:
                gi = gi + h[9] * p[i]
        m[i] = lerp(m[i], gi, h[1])
        v[i] = v[i] * h[2] + h[3] * gi * gi
        u = m[i] / h[4] * h[5]
        if h[8] != 0:
            u = u * (h[6] / (sqrt(v[i]) + h[7])) * h[8]
        p[i] = p[i] - u
    '''),
    # h = beta1 weight, beta2, eps, -lr/bias1, wd, maximize
    "adamax": Rule(("m", "u"), '''
        gi = -g[i] if h[5] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        m[i] = lerp(m[i], gi, h[0])
        a = u[i] * h[1]
        b = abs(gi) + h[2]
        u[i] = a if a >= b or a != a else b
        p[i] = p[i] + h[3] * m[i] / u[i]
    '''),
    # h = -lr, alpha, 1-alpha, eps, wd, momentum, centered, maximize
    "rmsprop": Rule(("v", "gavg", "buf"), '''
        gi = -g[i] if h[7] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        v[i] = v[i] * h[1] + h[2] * gi * gi
        if h[6]:
            gavg[i] = lerp(gavg[i], gi, h[2])
            avg = sqrt(v[i] + -gavg[i] * gavg[i]) + h[3]
        else:
            avg = sqrt(v[i]) + h[3]
        if h[5] > 0:
            buf[i] = buf[i] * h[5] + gi / avg
            p[i] = p[i] + h[0] * buf[i]
        else:
            p[i] = p[i] + h[0] * gi / avg
    '''),
    # h = -clr, eps, wd, maximize
    "adagrad": Rule(("s",), '''
        gi = -g[i] if h[3] else g[i]
        if h[2] != 0:
            gi = gi + h[2] * p[i]
        s[i] = s[i] + gi * gi
        p[i] = p[i] + h[0] * gi / (sqrt(s[i]) + h[1])
    '''),
    # h = -lr, rho, 1-rho, eps, wd, maximize
    "adadelta": Rule(("v", "acc"), '''
        gi = -g[i] if h[5] else g[i]
        if h[4] != 0:
            gi = gi + h[4] * p[i]
        v[i] = v[i] * h[1] + h[2] * gi * gi
        delta = sqrt(acc[i] + h[3]) / sqrt(v[i] + h[3]) * gi
        acc[i] = acc[i] * h[1] + h[2] * delta * delta
        p[i] = p[i] + h[0] * delta
    '''),
}


def body(family, indent):
    """``family``'s per-element rule, indented by ``indent`` spaces."""
    return textwrap.indent(textwrap.dedent(RULES[family].body).strip("\n"), " " * indent) + "\n"


def hyper_count(family):
    """How many hyperparameters ``family``'s rule reads (the length of its ``h``)."""
    return 1 + max(int(k) for k in re.findall(r"\bh\[(\d+)\]", RULES[family].body))


_CPU = '''\
from numba import njit, prange
from numpy import sqrt

_JIT = dict(cache=True, nogil=True, error_model="numpy")
CHUNK = {chunk}


@njit(inline="always", error_model="numpy")
{lerp}

@njit(**_JIT)
def range_(p, g, {states}, h, start, stop):
    for i in range(start, stop):
{body}

@njit(**_JIT)
def serial(p, g, {states}, h):
    range_(p, g, {states}, h, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def parallel(p, g, {states}, h):
    n = p.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        range_(p, g, {states}, h, c * CHUNK, min(n, (c + 1) * CHUNK))
'''


@functools.cache
def kernels(family):
    """(serial, parallel) CPU kernels of ``family``, generated from its rule (once, cached on disk)."""
    source = _CPU.format(chunk=_CHUNK, lerp=LERP, states=", ".join(RULES[family].states), body=body(family, 8))
    module = load_module(f"optim_{family}", source)
    return module.serial, module.parallel


def check_sizes(param, grad, states):
    """PyTorch-style error for a state or gradient that has not ``param``'s number of elements."""
    n = param.size
    for a in (grad, *states):
        if a is not None and a.size != n:
            raise RuntimeError(f"optimizer step: a state or gradient of {a.size} elements for a parameter of "
                               f"{n} elements")


def _in_place(a, dtype):
    return a.flags.c_contiguous and a.dtype == dtype


def step(family, param, grad, states, hyper):
    """Update ``param`` and the ``states`` arrays (all of ``param``'s shape) in place with
    ``family``'s rule for gradient ``grad``; ``hyper`` is the rule's scalars in order."""
    check_sizes(param, grad, states)
    writable = (param, *[np.empty(0, param.dtype) if a is None else a for a in states])
    # a flat view of each array, or a contiguous copy of the parameter's dtype, written back after
    flats = [a.reshape(-1) if _in_place(a, param.dtype) else np.ascontiguousarray(a, param.dtype).reshape(-1)
             for a in writable]
    g = np.ascontiguousarray(grad, param.dtype).reshape(-1)
    h = np.array(hyper, dtype=param.dtype)
    serial, parallel = kernels(family)
    args = (flats[0], g, *flats[1:], h)
    if param.size >= PARALLEL_MIN:
        with parallel_lock:
            parallel(*args)
    else:
        serial(*args)
    for a, f in zip(writable, flats):
        if not _in_place(a, param.dtype):
            a[...] = f.reshape(a.shape)
