"""The scalar functions that op-table expressions call, as Numba kernels see them.

Every name here has a Tensor twin in ``nbgrad/functional/pointwise.py`` (``COMPOSED``), so one
expression is both a kernel body and a differentiable Tensor program. Where Python's scalar
semantics (and so Numba's) differ from PyTorch's, these follow PyTorch: ``trunc_divide`` is
``trunc(a / b)`` for floats (``1.0 / 0.1`` gives 10, not Python's 9), ``remainder`` keeps the
dividend's sign on a zero result, ``clamp`` is NaN when a bound is, ``where``'s zero branch is
0 (not ``x * 0``, NaN at inf). Kernels import these with ``import_line``, which tags the line
with a hash of this file and of vmath.py, so an edit here changes the kernels' source and so
their cache entries.
"""
import hashlib
import math
import sys

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import vmath
from .vmath import exp  # noqa: F401  (vectorizable; math.exp is a libm call per element)

__all__ = ["import_line", "where", "exp", "log", "sqrt", "rsqrt", "sign", "power", "sigmoid", "clamp",
           "trunc_divide", "floor_div", "remainder", "sin", "cos", "tanh", "erf"]

sin, cos, tanh, erf = math.sin, math.cos, math.tanh, math.erf


def import_line(*names):
    """The line importing ``names`` from here into generated kernel source."""
    digest = hashlib.sha1()
    for module in (sys.modules[__name__], vmath):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return f"from {__name__} import {', '.join(names)}  # {digest.hexdigest()[:16]}\n"


_inline = njit(inline="always", error_model="numpy")


@_inline
def where(c, a, b):
    return a if c else b


@_inline
def log(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


@_inline
def sqrt(x):
    return math.sqrt(x) if x >= 0 else math.nan


@_inline
def rsqrt(x):
    return 1 / math.sqrt(x) if x >= 0 else math.nan


@_inline
def sign(x):
    return (x > 0) - (x < 0)


@_inline
def power(a, b):
    """Small integer exponents as products: exact, and far cheaper than pow()."""
    if b == 2:
        return a * a
    if b == 3:
        return a * a * a
    if b == 1:
        return a
    return a ** b


@_inline
def sigmoid(x):
    """exp(-|x|) never overflows; 1.45 ulp in float32, where one division gives 2.4."""
    e = exp(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


@_inline
def clamp(x, lo, hi):
    """``x`` within ``[lo, hi]``; NaN if ``x`` or a bound is NaN; ``hi`` where the bounds cross."""
    if lo != lo:
        return lo
    if hi != hi:
        return hi
    v = lo if x < lo else x
    return hi if v > hi else v


@_inline
def floor_div(a, b):
    return a // b


@_inline
def remainder(a, b):
    """Python's remainder, but a zero one keeps the dividend's sign, as PyTorch's fmod-based one does."""
    r = a % b
    return r if r != 0 else a * 0


def trunc_divide(a, b):
    """``a / b`` rounded toward zero: for floats, the rounded quotient truncated, as PyTorch
    computes it; for integers, C's division (exact at any size, unlike a float quotient)."""
    return np.trunc(a / b) if isinstance(a, float) else int(a / b)


@overload(trunc_divide)
def _trunc_divide(a, b):
    if isinstance(a, types.Float):
        return lambda a, b: np.trunc(a / b)
    if isinstance(a, (types.Integer, types.Boolean)):
        def integer(a, b):
            q = a // b
            return q + 1 if (q < 0 and q * b != a) else q
        return integer
    return None
