"""The dtype API beside the dtypes themselves: ``result_type``, the conversion methods
(``.int()``, ``.half()``...), ``Tensor.type`` and the legacy tensor types (``FloatTensor``...).

``Tensor.type()`` returns PyTorch's name, ``'torch.FloatTensor'``: code written for PyTorch
compares against that string. ``Tensor.type(name)`` accepts ``'torch.FloatTensor'``,
``'nbgrad.FloatTensor'``, a dtype or a legacy type."""
import numpy as np

from . import _dtype
from ._dtype import to_dtype
from .tensor import Tensor

__all__ = ["result_type", "can_cast", "finfo", "iinfo", "FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor",
           "LongTensor", "IntTensor", "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor"]


def result_type(tensor1, tensor2):
    """The dtype an op on ``tensor1`` and ``tensor2`` (tensors or numbers) computes in."""
    operands = (tensor1, tensor2)
    return _dtype.result_type([x for x in operands if isinstance(x, Tensor)],
                              [x for x in operands if not isinstance(x, Tensor)])


def can_cast(from_, to):
    """Whether PyTorch's casting rules allow ``from_`` to ``to`` (no lowering of kind)."""
    return to_dtype(from_).kind <= to_dtype(to).kind


class finfo:
    """The limits of a floating dtype (default: the default dtype), as ``torch.finfo``."""

    def __init__(self, type=None):
        d = _dtype.get_default_dtype() if type is None else to_dtype(type)
        if not d.is_floating_point:
            raise TypeError("torch.finfo() requires a floating point input type. Use torch.iinfo to handle "
                            "'torch.finfo'")
        info = np.finfo(d.numpy)
        self.dtype = d.name
        self.bits = info.bits
        self.eps, self.max, self.min = float(info.eps), float(info.max), float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        self.resolution = 10.0 ** -info.precision

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, eps={self.eps:g}, "
                f"smallest_normal={self.smallest_normal:g}, tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """The limits of an integer dtype, as ``torch.iinfo``."""

    def __init__(self, type):
        d = to_dtype(type)
        if d.kind != 1:
            raise TypeError("torch.iinfo() requires an integer input type. Use torch.finfo to handle 'torch.iinfo'")
        info = np.iinfo(d.numpy)
        self.dtype, self.bits, self.min, self.max = d.name, info.bits, int(info.min), int(info.max)

    def __repr__(self):
        return f"iinfo(min={float(self.min):g}, max={float(self.max):g}, dtype={self.dtype})"   # as PyTorch prints


class _LegacyType(type):
    """``isinstance(t, FloatTensor)`` is true for float32 tensors, as in PyTorch."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype is cls.dtype

    def __repr__(cls):
        return f"<class 'torch.{cls.__name__}'>"


def _legacy_type(d):
    def __new__(cls, *args, device=None):
        """``FloatTensor(2, 3)`` (sizes, zeros) or ``FloatTensor([1, 2])`` (data)."""
        return Tensor(*args, dtype=d, device=device)
    return _LegacyType(f"{d.legacy}Tensor", (), {"dtype": d, "__new__": __new__, "__module__": "torch",
                                                 "__doc__": f"The legacy constructor of {d.name} tensors."})


FloatTensor, DoubleTensor, HalfTensor, BFloat16Tensor, LongTensor, IntTensor, ShortTensor, CharTensor, ByteTensor, \
    BoolTensor = (_legacy_type(d) for d in (_dtype.float32, _dtype.float64, _dtype.float16, _dtype.bfloat16,
                                            _dtype.int64, _dtype.int32, _dtype.int16, _dtype.int8, _dtype.uint8,
                                            _dtype.bool))


def _type_named(name):
    if isinstance(name, _LegacyType):
        return name.dtype
    if isinstance(name, str):
        for prefix in ("torch.", "nbgrad."):
            if name.startswith(prefix) and name.endswith("Tensor"):
                legacy = name[len(prefix):-len("Tensor")]
                if legacy in _dtype._BY_LEGACY:
                    return _dtype._BY_LEGACY[legacy]
        if name.startswith(("torch.cuda.", "nbgrad.cuda.")):
            from .tensor import _check_device
            _check_device("cuda")
        raise ValueError(f"invalid type: '{name}'")
    return to_dtype(name)


def type(self, dtype=None, non_blocking=False):
    """With no argument, the type's name as PyTorch prints it (``'torch.FloatTensor'``);
    else this tensor converted to ``dtype`` (a dtype, a legacy type or its name)."""
    if dtype is None:
        return f"torch.{self.dtype.legacy}Tensor"
    return self.to(_type_named(dtype))


def _converter(d, name):
    def convert(self, memory_format=None):
        return self.to(d)
    convert.__name__ = name
    convert.__doc__ = f"``self.to(torch.{d.name})``."
    return convert


Tensor.type = type
for _d, _name in ((_dtype.int32, "int"), (_dtype.float16, "half"), (_dtype.bfloat16, "bfloat16"),
                  (_dtype.int16, "short"), (_dtype.uint8, "byte"), (_dtype.int8, "char")):
    setattr(Tensor, _name, _converter(_d, _name))
