"""Exchange with NumPy and other array libraries: DLPack both ways (zero-copy), the NumPy 2
``__array__`` protocol with ``copy=``, and ``__array_ufunc__``.

``np.exp(t)``, ``np.add(t, 1)``, ``ndarray * t`` on a Tensor give Tensors: elementwise
ufuncs called plainly map to nbgrad's ops (so they record for autograd). Other ufunc uses
(``np.add.reduce(t)``, ``out=`` arrays, ufuncs nbgrad lacks) work on the tensors' arrays and
give ndarrays, with ``numpy()``'s refusal for tensors that require grad."""
import numpy as np

from . import _cuda_dlpack
from .ops.targets import target_of
from .tensor import Tensor

__all__ = ["from_dlpack"]

_KDLCPU = 1


def from_dlpack(ext_tensor, *, device=None, copy=None):
    """A tensor over the memory of ``ext_tensor`` (anything with ``__dlpack__``, or a DLPack
    capsule), not copied unless ``copy=True``."""
    from .factories import from_numpy
    from .tensor import _check_device
    _check_device(device)
    if isinstance(ext_tensor, Tensor):
        return ext_tensor.clone() if copy else ext_tensor
    if _on_cuda(ext_tensor):
        return _from_cuda(ext_tensor, copy)
    if not hasattr(ext_tensor, "__dlpack__"):          # a bare capsule (the legacy protocol)
        if _cuda_dlpack.device_type(ext_tensor) == _cuda_dlpack.KDLCUDA:
            return _from_cuda(_cuda_dlpack.interface(ext_tensor), copy)
        ext_tensor = _Capsule(ext_tensor)
    return from_numpy(np.from_dlpack(ext_tensor, copy=copy))


def _on_cuda(obj):
    """Whether ``obj`` is a CUDA producer: a DLPack device of kDLCUDA, or (no DLPack) a numba
    device array or anything with the CUDA Array Interface."""
    device = getattr(obj, "__dlpack_device__", None)
    if device is not None:
        return device()[0] == _cuda_dlpack.KDLCUDA
    return getattr(obj, "__cuda_ndarray__", False) or hasattr(obj, "__cuda_array_interface__")


def _from_cuda(obj, copy):
    """A CUDA tensor over ``obj``'s memory: through its CUDA Array Interface when it has one,
    else through the capsule its ``__dlpack__`` gives."""
    from .factories import as_tensor
    if not (getattr(obj, "__cuda_ndarray__", False) or hasattr(obj, "__cuda_array_interface__")):
        obj = _cuda_dlpack.interface(obj.__dlpack__(stream=None))
    t = as_tensor(obj)
    return t.clone() if copy else t


class _Capsule:
    """A DLPack capsule behind the ``__dlpack__`` protocol, for ``np.from_dlpack``."""

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return self.capsule

    def __dlpack_device__(self):
        return (_KDLCPU, 0)


def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    """The tensor's memory as a DLPack capsule (CPU), shared unless ``copy=True``."""
    if self.requires_grad:
        raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
    if self.is_cuda:
        if copy:
            return self.clone().__dlpack__(stream=stream)
        target = target_of(self._data)
        target.synchronize()                    # the default stream's work is done before a consumer reads
        return _cuda_dlpack.export(self._data, target.data_ptr(self._data))
    kwargs = {"copy": copy}
    if max_version is not None:
        kwargs["max_version"] = max_version
    if dl_device is not None:
        kwargs["dl_device"] = dl_device
    return self._data.__dlpack__(stream=None, **kwargs)


def __dlpack_device__(self):
    """``(kDLCPU, 0)``, or ``(kDLCUDA, 0)`` for a CUDA tensor."""
    return (_cuda_dlpack.KDLCUDA, 0) if self.is_cuda else (_KDLCPU, 0)


def __array__(self, dtype=None, copy=None):
    """NumPy's view of the tensor: its memory itself unless a dtype change or ``copy=True``
    needs a copy; ``copy=False`` where a copy is needed raises, as NumPy 2 asks."""
    data = self.numpy()            # numpy()'s refusal: np.asarray(t) would be a writable alias
    if dtype is not None and np.dtype(dtype) != data.dtype:
        if copy is False:
            raise ValueError("Unable to avoid copy while creating an array as requested.")
        return data.astype(dtype)
    return data.copy() if copy else data


def _ufunc_ops():
    import nbgrad
    names = {"add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "divide": "div",
             "floor_divide": "floor_divide", "remainder": "remainder", "mod": "remainder", "fmod": "fmod",
             "power": "pow", "negative": "neg", "absolute": "abs", "sign": "sign", "exp": "exp", "exp2": "exp2",
             "expm1": "expm1", "log": "log", "log2": "log2", "log10": "log10", "log1p": "log1p", "sqrt": "sqrt",
             "square": "square", "reciprocal": "reciprocal", "sin": "sin", "cos": "cos", "tan": "tan",
             "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "sinh": "sinh",
             "cosh": "cosh", "tanh": "tanh", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh",
             "floor": "floor", "ceil": "ceil", "trunc": "trunc", "rint": "round", "hypot": "hypot",
             "copysign": "copysign", "logaddexp": "logaddexp", "maximum": "maximum", "minimum": "minimum",
             "equal": "eq", "not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt",
             "greater_equal": "ge", "logical_and": "logical_and", "logical_or": "logical_or",
             "logical_xor": "logical_xor", "logical_not": "logical_not", "isnan": "isnan", "isinf": "isinf",
             "isfinite": "isfinite"}
    return {getattr(np, u): getattr(nbgrad, n) for u, n in names.items() if hasattr(nbgrad, n)}


_UFUNCS = None


def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
    global _UFUNCS
    if _UFUNCS is None:
        _UFUNCS = _ufunc_ops()
    op = _UFUNCS.get(ufunc) if method == "__call__" and not kwargs else None
    if op is not None:
        from .factories import as_tensor
        return op(*[as_tensor(x) if isinstance(x, np.ndarray) else x.item() if isinstance(x, np.generic) else x
                    for x in inputs])
    if any(isinstance(o, Tensor) for o in kwargs.get("out", ())):
        raise TypeError(f"numpy.{ufunc.__name__}: out= may not be a Tensor; use nbgrad's op or an ndarray out")
    arrays = [np.asarray(x) if isinstance(x, Tensor) else x for x in inputs]
    return getattr(ufunc, method)(*arrays, **kwargs)


Tensor.__dlpack__ = __dlpack__
Tensor.__dlpack_device__ = __dlpack_device__
Tensor.__array__ = __array__
Tensor.__array_ufunc__ = __array_ufunc__
