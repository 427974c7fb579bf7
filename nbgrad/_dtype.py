"""nbgrad's dtypes and PyTorch's type promotion."""
import builtins

import numpy as np

__all__ = ["dtype", "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "result_type", "promote_types", "get_default_dtype"]

try:                     # NumPy has no bfloat16 of its own; ml_dtypes (JAX's) adds one
    import ml_dtypes as _ml_dtypes
except ImportError:
    _ml_dtypes = None

class dtype:
    """A tensor element type; ``kind`` orders bool < integer < floating for promotion."""
    __slots__ = ("name", "numpy", "kind", "is_floating_point", "legacy")

    def __init__(self, name, numpy_type, kind, legacy):
        self.name, self.kind, self.legacy = name, kind, legacy
        self.numpy = np.dtype(numpy_type) if numpy_type is not None else None
        self.is_floating_point = kind == 2

    @property
    def itemsize(self):
        return self.numpy.itemsize if self.numpy is not None else 2

    @property
    def is_signed(self):
        return self.name != "uint8" and self.kind != 0

    def to_real(self):
        return self

    def __repr__(self):
        return f"torch.{self.name}"      # as PyTorch prints it, so printed output matches

    def __reduce__(self):
        return self.name


float32 = dtype("float32", np.float32, 2, "Float")
float64 = dtype("float64", np.float64, 2, "Double")
int64 = dtype("int64", np.int64, 1, "Long")
int32 = dtype("int32", np.int32, 1, "Int")
int16 = dtype("int16", np.int16, 1, "Short")
int8 = dtype("int8", np.int8, 1, "Char")
uint8 = dtype("uint8", np.uint8, 1, "Byte")
# stored in 2 bytes, computed in float32 (as PyTorch does on the CPU): Numba has no float16
float16 = dtype("float16", np.float16, 2, "Half")
bfloat16 = dtype("bfloat16", _ml_dtypes.bfloat16 if _ml_dtypes else None, 2, "BFloat16")
bool = dtype("bool", np.bool_, 0, "Bool")
float = float32
double = float64
half = float16
long = int64
int = int32
short = int16

ALL = (float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool)
_BY_NUMPY = {d.numpy: d for d in ALL if d.numpy is not None}
_BY_NAME = {d.name: d for d in ALL}
_BY_LEGACY = {d.legacy: d for d in ALL}
# NumPy types nbgrad stores in a wider supported type when copying (never when sharing)
_WIDENED = {np.dtype(t): int64 for t in (np.uint16, np.uint32)}
HALF = frozenset(d.numpy for d in (float16, bfloat16) if d.numpy is not None)    # computed in float32
# the same, for identity checks on hot paths (``x is F16 or x is BF16``: a third of ``in HALF``'s cost)
F16, BF16 = float16.numpy, bfloat16.numpy


def _check_available(d):
    if d.numpy is None:
        raise TypeError("nbgrad.bfloat16 needs the ml_dtypes package (pip install ml_dtypes), which NumPy uses to "
                        "store bfloat16; it is not installed")
    return d


def from_numpy_dtype(np_dtype, copy=False):
    d = _BY_NUMPY.get(np_dtype)
    if d is None and copy:
        d = _WIDENED.get(np_dtype)
    if d is None:
        raise TypeError(f"can't convert np.ndarray of type numpy.{np_dtype}. The only supported types are: "
                        "float64, float32, float16, int64, int32, int16, int8, uint8, and bool.")
    return d


def to_dtype(d):
    """Accept an nbgrad dtype, a NumPy dtype or a Python type."""
    if isinstance(d, dtype):
        return _check_available(d)
    if d is builtins.bool:
        return bool
    if d is builtins.int:
        return int64
    if isinstance(d, str) and d.startswith("torch."):      # 'torch.float16'
        named = _BY_NAME.get(d[6:]) or _BY_NAME.get(_ALIASES.get(d[6:], ""))
        if named is not None:
            return _check_available(named)
    if d is builtins.float:
        return get_default_dtype()
    np_dtype = np.dtype(d)
    if np_dtype not in _BY_NUMPY:       # asked for by name: no silent widening to a supported type
        raise TypeError(f"nbgrad has no dtype {np_dtype}; the dtypes are: {', '.join(x.name for x in ALL)}")
    return _BY_NUMPY[np_dtype]


_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
            "short": "int16"}

_default = [float32]


def get_default_dtype():
    return _default[0]


def set_default_dtype(d):
    d = to_dtype(d)
    if not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    _default[0] = d


def scalar_kind(value):
    if isinstance(value, builtins.bool) or isinstance(value, np.bool_):
        return 0
    if isinstance(value, (builtins.int, np.integer)):
        return 1
    return 2


def promote_types(type1, type2):
    """The smallest dtype both convert to without losing their kind (``torch.promote_types``)."""
    a, b = to_dtype(type1), to_dtype(type2)
    if a is b:
        return a
    if a.kind != b.kind:
        return a if a.kind > b.kind else b
    if a.kind == 2:
        if {a.name, b.name} == {"float16", "bfloat16"}:
            return float32
        return a if a.itemsize > b.itemsize else b
    if uint8 in (a, b):                 # uint8 with a signed type: a signed type holding both
        other = b if a is uint8 else a
        return int16 if other is int8 else other
    return a if a.itemsize > b.itemsize else b


def _combine(higher, lower):
    """PyTorch's rule for a lower-priority operand: it counts only if of a higher kind."""
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher is bool or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


_DEFAULT_OF_KIND = (lambda: bool, lambda: int64, get_default_dtype)


def result_type(tensors, scalars=()):
    """PyTorch's promotion: tensors with dimensions outrank 0-d tensors, which outrank
    Python numbers; a lower-ranked operand only matters if it is of a higher kind."""
    if len(tensors) == 1 and not scalars:
        return _BY_NUMPY[tensors[0]._data.dtype]
    dim = zero = wrapped = None
    for t in tensors:
        d = t.dtype
        if t._data.ndim:
            dim = d if dim is None else promote_types(dim, d)
        else:
            zero = d if zero is None else promote_types(zero, d)
    for s in scalars:
        d = _DEFAULT_OF_KIND[scalar_kind(s)]()
        wrapped = d if wrapped is None else promote_types(wrapped, d)
    return _combine(dim, _combine(zero, wrapped))
