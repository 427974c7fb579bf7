"""exp as plain arithmetic, so that loops calling it in Numba kernels vectorize.

Numba lowers ``math.exp`` to a call into libm, one element at a time: only Intel's SVML
would vectorize it, and PyPI's llvmlite is built without it. This ``exp`` is arithmetic
LLVM vectorizes, in the dtype of its argument (float32 stays float32: twice the lanes):

* x = k ln2 + r with k = round(x / ln2), |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts,
  the first with trailing zero bits, so that k * ln2_hi is exact);
* e^r = 1 + r + r^2 q(r), q a polynomial (Cephes' expf for float32; a Chebyshev fit of
  degree 9 for float64, 0.15 ulp from e^r before rounding);
* times 2^k, written straight into the exponent bits (``_exp2i``), as two factors so
  that both are normal numbers even where the result is denormal or 2^k itself is not
  representable: exact, then one rounding.

No branches: x is clamped first (NaN passes through), so +inf and large x give inf, -inf
and very negative x give 0. Worst error against the correctly rounded e^x over the whole
range: 1 ulp in float32 and in float64 (tests/test_vmath.py).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp"]


@intrinsic
def _exp2i(typingctx, k):
    """2^k for a float k holding an integer in the normal exponent range: k plus the bias,
    converted to int32 (AVX2 has no vector float64 -> int64 conversion) and shifted into
    the exponent field. NaN is undefined (fptosi): callers pass k = 0 instead."""
    if not isinstance(k, types.Float):
        return None

    def codegen(context, builder, sig, args):
        i = builder.fptosi(args[0], ir.IntType(32))
        if k.bitwidth == 32:
            bits = builder.shl(builder.add(i, ir.Constant(i.type, 127)), ir.Constant(i.type, 23))
            return builder.bitcast(bits, ir.FloatType())
        i = builder.sext(builder.add(i, ir.Constant(i.type, 1023)), ir.IntType(64))
        return builder.bitcast(builder.shl(i, ir.Constant(i.type, 52)), ir.DoubleType())

    return k(k), codegen


# Constants as NumPy scalars of the working dtype: Numba would widen float32 arithmetic
# with a Python float to float64.
_F = np.float32
_HI32, _LO32 = _F(89.0), _F(-104.0)        # e^89 overflows; e^-104 < half the least denormal
_LOG2E32 = _F(1.0 / math.log(2.0))
_LN2_HI32, _LN2_LO32 = _F(0.693359375), _F(-2.12194440e-4)
_ROUND32 = _F(1.5 * 2.0**23)               # (v + _ROUND) - _ROUND is v rounded to an integer
_P0, _P1, _P2, _P3, _P4, _P5 = (_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                               4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_ZERO32, _HALF32, _ONE32 = _F(0.0), _F(0.5), _F(1.0)

_HI64, _LO64 = 710.0, -746.0
_LOG2E64 = 1.0 / math.log(2.0)
_LN2_HI64, _LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10    # fdlibm
_ROUND64 = 1.5 * 2.0**52
_C0, _C1, _C2, _C3, _C4 = 2.5100424157005067e-08, 2.7620138719733994e-07, 2.7557268378684192e-06, \
    2.480152119021773e-05, 0.00019841269863105968
_C5, _C6, _C7, _C8, _C9 = 0.0013888888917281794, 0.008333333333330051, 0.04166666666662399, \
    0.16666666666666669, 0.5000000000000001


@njit(inline="always")
def _exp32(x):
    x = _HI32 if x > _HI32 else x
    x = _LO32 if x < _LO32 else x
    k = (x * _LOG2E32 + _ROUND32) - _ROUND32
    k = k if k == k else _ZERO32
    r = (x - k * _LN2_HI32) - k * _LN2_LO32
    q = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = (q * (r * r) + r) + _ONE32
    h = (k * _HALF32 + _ROUND32) - _ROUND32
    return (p * _exp2i(h)) * _exp2i(k - h)


@njit(inline="always")
def _exp64(x):
    x = _HI64 if x > _HI64 else x
    x = _LO64 if x < _LO64 else x
    k = (x * _LOG2E64 + _ROUND64) - _ROUND64
    k = k if k == k else 0.0
    r = (x - k * _LN2_HI64) - k * _LN2_LO64
    q = ((((((((_C0 * r + _C1) * r + _C2) * r + _C3) * r + _C4) * r + _C5) * r + _C6) * r + _C7) * r + _C8) * r + _C9
    p = (q * (r * r) + r) + 1.0
    h = (k * 0.5 + _ROUND64) - _ROUND64
    return (p * _exp2i(h)) * _exp2i(k - h)


def exp(x):
    """e^x, in x's float dtype, for use inside Numba kernels (from Python: ``math.exp``)."""
    return math.exp(x)


@overload(exp, inline="always")
def _exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if isinstance(x, types.Float):
        return lambda x: _exp64(x)
    return None
