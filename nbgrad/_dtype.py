"""nbgrad's dtypes and PyTorch's type promotion."""
import builtins

import numpy as np

__all__ = ["dtype", "float32", "float64", "int64", "bool", "result_type", "get_default_dtype"]

class dtype:
    """A tensor element type; ``kind`` orders bool < integer < floating for promotion."""
    __slots__ = ("name", "numpy", "kind", "is_floating_point", "legacy")

    def __init__(self, name, numpy_type, kind, legacy):
        self.name, self.numpy, self.kind, self.legacy = name, np.dtype(numpy_type), kind, legacy
        self.is_floating_point = kind == 2

    @property
    def itemsize(self):
        return self.numpy.itemsize

    def __repr__(self):
        return f"torch.{self.name}"      # as PyTorch prints it, so printed output matches

    def __reduce__(self):
        return self.name


float32 = dtype("float32", np.float32, 2, "Float")
float64 = dtype("float64", np.float64, 2, "Double")
int64 = dtype("int64", np.int64, 1, "Long")
bool = dtype("bool", np.bool_, 0, "Bool")
float = float32
double = float64
long = int64

_BY_NUMPY = {d.numpy: d for d in (float32, float64, int64, bool)}
# NumPy types nbgrad stores in a wider supported type when copying (never when sharing)
_WIDENED = {np.dtype(t): int64 for t in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32)}
_WIDENED[np.dtype(np.float16)] = float32


def from_numpy_dtype(np_dtype, copy=False):
    d = _BY_NUMPY.get(np_dtype)
    if d is None and copy:
        d = _WIDENED.get(np_dtype)
    if d is None:
        raise TypeError(f"can't convert np.ndarray of type numpy.{np_dtype}. The only supported types are: "
                        "float64, float32, int64, and bool.")
    return d


def to_dtype(d):
    """Accept an nbgrad dtype, a NumPy dtype or a Python type."""
    if isinstance(d, dtype):
        return d
    if d is builtins.bool:
        return bool
    if d is int:
        return int64
    if d is builtins.float:
        return get_default_dtype()
    return from_numpy_dtype(np.dtype(d), copy=True)


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
    if isinstance(value, (int, np.integer)):
        return 1
    return 2


_DEFAULT_OF_KIND = (lambda: bool, lambda: int64, get_default_dtype)


def result_type(tensors, scalars=()):
    """PyTorch's promotion: tensors with dimensions outrank 0-d tensors, which outrank
    Python numbers; a lower-ranked operand only matters if it is of a higher kind."""
    if len(tensors) == 1 and not scalars:
        return _BY_NUMPY[tensors[0]._data.dtype]
    kind = -1
    best = [None, None]              # best dtype among dimensioned / 0-d tensors
    for t in tensors:
        d = t.dtype
        slot = 0 if t._data.ndim else 1
        b = best[slot]
        if b is None or d.kind > b.kind or (d.kind == b.kind and d.itemsize > b.itemsize):
            best[slot] = d
        kind = max(kind, d.kind)
    for s in scalars:
        kind = max(kind, scalar_kind(s))
    for b in best:
        if b is not None and b.kind == kind:
            return b
    return _DEFAULT_OF_KIND[kind]()
