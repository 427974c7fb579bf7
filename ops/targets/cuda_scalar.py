"""CUDA lowerings of the few scalar functions (``ops/scalar.py``) that NumPy ufuncs implement.

The op table's expressions call ``scalar.py``'s ``njit`` functions, which numba-cuda compiles as
device functions unchanged (608 of the 648 kernel variants compile to PTX as they are; checked
with ``compile_ptx`` for sm_90). The rest call ``np.floor``, ``np.ceil``, ``np.trunc``, ``np.rint``,
``np.fmod`` and ``np.exp2``, which numba-cuda has no ufunc loops for. Here those functions get a
CUDA-target overload through libdevice, the same operation (IEEE floor/ceil/trunc, rint rounding
halves to even, C's fmod, exp2), so the table's expressions stay the one definition. Imported by
the CUDA code generator (not under the simulator, which runs the CPU functions).
"""
import numpy as np
from numba import types
from numba.core.extending import overload
from numba.cuda import libdevice

from .. import scalar

__all__ = []


def _float_pair(f64, f32):
    """An implementation picking libdevice's double or float function by the argument's width."""
    def pick(x):
        return (lambda x: f32(x)) if x.bitwidth == 32 else (lambda x: f64(x))
    return pick


def _rounding(fn, f64, f32):
    pick = _float_pair(f64, f32)

    @overload(fn, target="cuda")
    def impl(x):
        if isinstance(x, types.Float):
            return pick(x)
        if isinstance(x, (types.Integer, types.Boolean)):
            return lambda x: x                   # integers are their own floor, as on the CPU
        return None


_rounding(scalar.floor, libdevice.floor, libdevice.floorf)
_rounding(scalar.ceil, libdevice.ceil, libdevice.ceilf)
_rounding(scalar.trunc, libdevice.trunc, libdevice.truncf)
_rounding(scalar.round, libdevice.rint, libdevice.rintf)      # halves to even, as np.rint


@overload(scalar.trunc_divide, target="cuda")
def _trunc_divide(a, b):
    if isinstance(a, types.Float) or isinstance(b, types.Float):
        wide = (isinstance(a, types.Float) and a.bitwidth == 64) or (isinstance(b, types.Float) and b.bitwidth == 64)
        return (lambda a, b: libdevice.trunc(a / b)) if wide else (lambda a, b: libdevice.truncf(a / b))
    if isinstance(a, (types.Integer, types.Boolean)):
        def integer(a, b):
            q = a // b
            return q + 1 if (q < 0 and q * b != a) else q
        return integer
    return None


@overload(scalar.fmod, target="cuda")
def _fmod(a, b):
    if isinstance(a, types.Float) or isinstance(b, types.Float):
        wide = (isinstance(a, types.Float) and a.bitwidth == 64) or (isinstance(b, types.Float) and b.bitwidth == 64)
        return (lambda a, b: libdevice.fmod(a, b)) if wide else (lambda a, b: libdevice.fmodf(a, b))
    if isinstance(a, (types.Integer, types.Boolean)):
        return lambda a, b: a - scalar.trunc_divide(a, b) * b
    return None


@overload(np.exp2, target="cuda")
def _exp2(x):
    if isinstance(x, types.Float):
        return _float_pair(libdevice.exp2, libdevice.exp2f)(x)
    if isinstance(x, (types.Integer, types.Boolean)):
        return lambda x: libdevice.exp2(float(x))
    return None
