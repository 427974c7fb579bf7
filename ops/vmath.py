"""Scalar math for Numba kernels whose loops LLVM can vectorize: ``exp`` and ``sigmoid``
in the dtype of their argument, ``fma``, the NaN-propagating ``maximum``, and the float64
row reductions ``vsum`` and ``vdot``.

Numba lowers ``math.exp`` to a call into libm, one element at a time: only Intel's SVML
would vectorize it, and PyPI's llvmlite is built without it. This ``exp`` is arithmetic,
and float32 stays float32 (twice the lanes of float64):

* x = k ln2 + r with k = round(x / ln2), |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts,
  the first with trailing zero bits, so that k * ln2_hi is exact even without FMA);
* e^r = 1 + r + r^2 q(r), q a polynomial (Cephes' expf for float32; a Chebyshev fit of
  degree 9 for float64, 0.15 ulp from e^r before rounding);
* times 2^k, written straight into the exponent bits (``_ldexp``), as two factors so
  that both are normal numbers even where the result is denormal or 2^k itself is not
  representable: exact, then one rounding.

No branches: x is clamped first (NaN passes through), so +inf and large x give inf, -inf
and very negative x give 0. Worst error seen against e^x over the whole range (dense
sweeps, tests/test_vmath.py): 0.96 ulp in float32, 1.04 ulp in float64; sigmoid 2.4 ulp.
Kernels call these as Numba functions (LLVM inlines them): an edit here reaches cached
kernels only through a changed kernel source, hence ``import_line``.

A max written ``m = v if v > m or v != v else m`` and a float sum do not vectorize either
(their order matters to LLVM): ``maximum`` is LLVM's NaN-propagating maximum, whose
reductions vectorize, and ``vsum``/``vdot`` may add in any order.
"""
import hashlib
import math
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = ["exp", "sigmoid", "fma", "maximum", "vsum", "vdot", "import_line"]


def import_line(*names, module=None):
    """The line importing ``names`` from here (or from ``module``) into generated kernel
    source, tagged with a hash of the module's file: Numba's cache checks only the kernel
    file's own timestamp, so an edit there must change the kernel source (and so its cache
    entry) to be seen."""
    module = module or sys.modules[__name__]
    with open(module.__file__, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:16]
    return f"from {module.__name__} import {', '.join(names)}  # {digest}\n"


def _call(builder, name, args):
    """Call the LLVM intrinsic ``name`` (a float overload: ``.f32``/``.f64`` is added)."""
    t = args[0].type
    name += ".f32" if t == ir.FloatType() else ".f64"
    return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t] * len(args)), name),
                        args)


@intrinsic
def maximum(typingctx, a, b):
    """The larger of two floats of one dtype, NaN if either is (as PyTorch's max), and
    +0 over -0."""
    if not (isinstance(a, types.Float) and a == b):
        return None
    return a(a, b), lambda context, builder, sig, args: _call(builder, "llvm.maximum", args)


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c, fused where the CPU has FMA (LLVM's fmuladd), else a multiply and an add."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    return a(a, b, c), lambda context, builder, sig, args: _call(builder, "llvm.fmuladd", args)


@intrinsic
def _ldexp(typingctx, p, k):
    """p * 2^k for p normal and a float k holding an integer up to twice the exponent range:
    2^k as two factors 2^(k >> 1) and 2^(k - (k >> 1)), each normal, written straight into
    the exponent bits, so the product rounds once even where it is denormal or 2^k does not
    exist. k goes through int32 (AVX2 has no vector float64 -> int64 conversion); NaN k is
    undefined (fptosi): callers pass k = 0 instead."""
    if not (isinstance(p, types.Float) and p == k):
        return None
    bias, shift = (127, 23) if p.bitwidth == 32 else (1023, 52)

    def codegen(context, builder, sig, args):
        x, kf = args
        ki = builder.fptosi(kf, ir.IntType(32))
        half = builder.ashr(ki, ir.Constant(ki.type, 1))
        for e in (half, builder.sub(ki, half)):
            e = builder.add(e, ir.Constant(e.type, bias))
            if shift == 52:
                e = builder.sext(e, ir.IntType(64))
            x = builder.fmul(x, builder.bitcast(builder.shl(e, ir.Constant(e.type, shift)), x.type))
        return x

    return p(p, k), codegen


# Constants as NumPy scalars of the working dtype: Numba would widen float32 arithmetic
# with a Python float to float64.
_F = np.float32
_HI32, _LO32 = _F(89.0), _F(-104.0)        # e^89 overflows; e^-104 < half the least denormal
_LOG2E32 = _F(1.0 / math.log(2.0))
_NLN2_HI32, _NLN2_LO32 = _F(-0.693359375), _F(2.12194440e-4)     # -ln2, Cephes
_ROUND32 = _F(1.5 * 2.0**23)               # (v + _ROUND) - _ROUND is v rounded to an integer
_P0, _P1, _P2, _P3, _P4, _P5 = (_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                               4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_ZERO32, _ONE32 = _F(0.0), _F(1.0)

_HI64, _LO64 = 710.0, -746.0
_LOG2E64 = 1.0 / math.log(2.0)
_NLN2_HI64, _NLN2_LO64 = -6.93147180369123816490e-01, -1.90821492927058770002e-10    # -ln2, fdlibm
_ROUND64 = 1.5 * 2.0**52
_C0, _C1, _C2, _C3, _C4 = (2.5100424157005067e-08, 2.7620138719733994e-07, 2.7557268378684192e-06,
                           2.480152119021773e-05, 0.00019841269863105968)
_C5, _C6, _C7, _C8, _C9 = (0.0013888888917281794, 0.008333333333330051, 0.04166666666662399,
                           0.16666666666666669, 0.5000000000000001)


@njit
def _exp32(x):
    x = _HI32 if x > _HI32 else x
    x = _LO32 if x < _LO32 else x
    k = (x * _LOG2E32 + _ROUND32) - _ROUND32
    k = k if k == k else _ZERO32
    r = fma(k, _NLN2_LO32, fma(k, _NLN2_HI32, x))
    q = fma(fma(fma(fma(fma(_P0, r, _P1), r, _P2), r, _P3), r, _P4), r, _P5)
    p = (q * (r * r) + r) + _ONE32
    return _ldexp(p, k)


@njit
def _exp64(x):
    x = _HI64 if x > _HI64 else x
    x = _LO64 if x < _LO64 else x
    k = (x * _LOG2E64 + _ROUND64) - _ROUND64
    k = k if k == k else 0.0
    r = fma(k, _NLN2_LO64, fma(k, _NLN2_HI64, x))
    q = fma(fma(fma(fma(fma(_C0, r, _C1), r, _C2), r, _C3), r, _C4), r, _C5)
    q = fma(fma(fma(fma(q, r, _C6), r, _C7), r, _C8), r, _C9)
    p = (q * (r * r) + r) + 1.0
    return _ldexp(p, k)


def exp(x):
    """e^x in x's float dtype (integers and bools: float64), for use inside Numba kernels
    (from Python: ``math.exp``)."""
    return math.exp(x)


@overload(exp)
def _exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if isinstance(x, (types.Float, types.Integer, types.Boolean)):
        return lambda x: _exp64(np.float64(x))
    return None


@njit
def _sigmoid32(x):
    e = _exp32(-abs(x))
    return (_ONE32 if x >= _ZERO32 else e) / (_ONE32 + e)


@njit
def _sigmoid64(x):
    e = _exp64(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


def sigmoid(x):
    """1 / (1 + e^-x) in x's float dtype (integers and bools: float64), for Numba kernels:
    e = e^-|x| <= 1 never overflows, and x < 0 gives e / (1 + e)."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@overload(sigmoid)
def _sigmoid(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    if isinstance(x, (types.Float, types.Integer, types.Boolean)):
        return lambda x: _sigmoid64(np.float64(x))
    return None


# The reductions are functions of their own, not inlined into the caller's Numba IR: their
# 'reassoc' flag must not reach the caller's arithmetic (nor exp's rounding trick). LLVM
# still inlines them, flags kept per instruction.
@njit(fastmath={"reassoc"}, error_model="numpy")
def vsum(a):
    """The float64 sum of a 1-D float array, added in whatever order vectorizes."""
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s


@njit(fastmath={"reassoc"}, error_model="numpy")
def vdot(a, b):
    """sum(a * b) over two 1-D float arrays of one length, products and sum in float64."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * b[i]
    return s
