"""PyTorch's scalar semantics where Python's, and so Numba's, differ: for kernel bodies.

Python floors ``//`` and ``%`` and gives a zero remainder the divisor's sign; PyTorch
truncates ``a / b`` for ``rounding_mode='trunc'`` (``1.0 / 0.1`` is 10, not Python's 9)
and keeps the dividend's sign on a zero remainder. ``clamp`` is NaN when a bound is, as
``min(max(x, lo), hi)`` is in PyTorch. Kernels import these with ``import_line``, so an
edit here changes the kernels' source and so their cache entries.
"""
import sys

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import vmath

__all__ = ["trunc_divide", "clamp", "import_line"]


def import_line(*names):
    return vmath.import_line(*names, module=sys.modules[__name__])


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


@njit(inline="always", error_model="numpy")
def clamp(x, lo, hi):
    """``x`` within ``[lo, hi]``; NaN if ``x`` or a bound is NaN; ``hi`` where the bounds
    cross."""
    if lo != lo:
        return lo
    if hi != hi:
        return hi
    v = lo if x < lo else x
    return hi if v > hi else v
