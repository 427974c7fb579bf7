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
           "trunc_divide", "floor_div", "remainder", "sin", "cos", "tanh", "erf", "erfc", "erfinv", "expm1",
           "log1p", "log2", "log10", "exp2", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh",
           "acosh", "atanh", "floor", "ceil", "round", "trunc", "hypot", "xlogy", "logaddexp", "copysign", "fmod"]

# libm's, as Numba calls them (NaN, not an error, outside the domain; float32 stays float32)
sin, cos, tanh, tan, asin, acos, atan, atan2 = math.sin, math.cos, math.tanh, math.tan, math.asin, math.acos, \
    math.atan, math.atan2
sinh, cosh, asinh, acosh, atanh, hypot = math.sinh, math.cosh, math.asinh, math.acosh, math.atanh, math.hypot
erf, erfc, expm1, log1p, log2, log10, copysign = math.erf, math.erfc, math.expm1, math.log1p, math.log2, \
    math.log10, math.copysign
exp2 = np.exp2


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


@_inline
def xlogy(x, y):
    """``x * log(y)``, 0 where ``x`` is 0 (unless ``y`` is NaN), as PyTorch's."""
    if y != y:
        return y * 1.0
    if x == 0:
        return 0.0
    return x * log(y)


@_inline
def logaddexp(a, b):
    """``log(exp(a) + exp(b))`` without overflow; equal infinities give themselves."""
    if a == b and a - a != 0:
        return a * 1.0
    m = a if a > b else b
    return m + math.log1p(math.exp(-abs(a - b)))


@_inline
def erfinv(x):
    """The inverse of erf, in float64 whatever the input: Giles' approximation ("Approximating
    the erfinv function", GPU Computing Gems, 2011), then Halley steps on ``erf(y) = x``, written
    ``erfc(y) = 1 - x`` above 0.5, where ``1 - x`` is exact and erf's is not. The approximation
    is for float32 arguments: nearer 1 (down to 1 - 2**-53) it is a rougher start, which the
    steps (two from single precision, eight from 1 - 2**-53) still bring to float64's last bits."""
    a = abs(np.float64(x))
    if not a < 1:
        return np.float64(math.copysign(math.inf, x)) if a == 1 else np.float64(math.nan)
    w = -math.log((1.0 - a) * (1.0 + a))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                  -0.00417768164, 0.246640727, 1.50140941):
            p = c + p * w
    else:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                  0.00943887047, 1.00167406, 2.83297682):
            p = c + p * w
    y = p * a
    for _ in range(10):
        err = math.erf(y) - a if a <= 0.5 else (1.0 - a) - math.erfc(y)
        step = err / (1.1283791670955126 * math.exp(-y * y))
        step /= 1.0 + y * step
        y -= step
        if abs(step) <= 1e-17 * y:
            break
    return math.copysign(y, x)


def fmod(a, b):
    """C's remainder, of the dividend's sign: NumPy's for floats; for integers, from ``trunc_divide``
    (Numba's integer ``np.fmod`` is not C's)."""
    return np.fmod(a, b)


@overload(fmod)
def _fmod(a, b):
    if isinstance(a, types.Float) or isinstance(b, types.Float):
        return lambda a, b: np.fmod(a, b)
    if isinstance(a, (types.Integer, types.Boolean)):
        return lambda a, b: a - trunc_divide(a, b) * b
    return None


def _rounding(name, fn):
    """``floor`` and its kind: NumPy's on floats (a float result, unlike ``math.floor``), the
    identity on integers (exact at any size)."""
    def rounding(x):
        return fn(x)
    rounding.__name__ = rounding.__qualname__ = name

    @overload(rounding)
    def _overload(x):
        if isinstance(x, types.Float):
            return lambda x: fn(x)
        if isinstance(x, (types.Integer, types.Boolean)):
            return lambda x: x
        return None
    return rounding


floor, ceil, trunc = _rounding("floor", np.floor), _rounding("ceil", np.ceil), _rounding("trunc", np.trunc)
round = _rounding("round", np.rint)     # halves to even, as PyTorch
