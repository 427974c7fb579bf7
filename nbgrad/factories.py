"""Making tensors: from data, filled, ranges, and random (reproducible with ``manual_seed``).

Arrays come from the target of the requested device (``_check_device``). Ranges and random
numbers are made as NumPy arrays on the host, then handed to that target (``asarray``)."""
import numbers

import numpy as np

from . import _dtype
from ._dtype import from_numpy_dtype, get_default_dtype, to_dtype
from nbgrad.ops.targets import CPU, target_of

from .tensor import Size, Tensor, _array_from, _check_device

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace",
           "eye", "rand", "randn", "randint", "zeros_like", "ones_like", "full_like", "empty_like",
           "rand_like", "randn_like", "randint_like", "manual_seed", "seed", "initial_seed", "Generator",
           "scalar_tensor"]


def _leaf(data, requires_grad):
    if requires_grad and data.dtype.kind != "f":        # PyTorch's factory text, not requires_grad_'s
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    return Tensor._wrap(data, bool(requires_grad))


def _sizes(size):
    """``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    for n in size:
        if type(n) is not int or n < 0:
            break
    else:
        return size                     # the usual case, checked in one pass
    for n in size:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            raise TypeError(f"size must be a sequence of ints, but got an element of type {type(n).__name__}")
        if n < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {n}: {list(size)}")
    return tuple(int(n) for n in size)


def _float_dtype(dtype):
    return to_dtype(dtype) if dtype is not None else get_default_dtype()


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor holding a copy of ``data``."""
    target = _check_device(device)
    return _leaf(_array_from(data, to_dtype(dtype) if dtype is not None else None, target), requires_grad)


def scalar_tensor(value, *, dtype=None, device=None, requires_grad=False):
    return tensor(value, dtype=_float_dtype(dtype), device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, sharing memory where it can (a tensor or an array of a supported dtype)."""
    _check_device(device)
    if device is not None:
        return as_tensor(data, dtype).to(device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if getattr(data, "__cuda_ndarray__", False) or hasattr(data, "__cuda_array_interface__"):
        t = Tensor._wrap(_check_device("cuda").wrap(data))          # zero-copy: CuPy, PyTorch CUDA, numba
        return t if dtype is None else t.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or to_dtype(dtype).numpy == data.dtype):
        try:
            return from_numpy(data)
        except (TypeError, ValueError):
            pass
    return tensor(data, dtype=dtype)


def from_numpy(ndarray):
    """A tensor sharing ``ndarray``'s memory: changes to one show in the other."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    from_numpy_dtype(ndarray.dtype)
    if any(s < 0 for s in ndarray.strides):
        raise ValueError("At least one stride in the given numpy array is negative, and tensors with negative "
                         "strides are not currently supported. (You can probably work around this by making "
                         "a copy of your array  with array.copy().) ")
    if any(s % ndarray.itemsize for s in ndarray.strides):
        raise ValueError("given numpy array strides not a multiple of the element byte size. "
                         "Copy the numpy array to reallocate the memory.")
    return Tensor._wrap(CPU.asarray(ndarray))


def _filled(size, value, dtype, requires_grad, target):
    shape = _sizes(size)
    if dtype is None:
        dtype = _dtype.bool if isinstance(value, bool) else \
            _dtype.int64 if isinstance(value, numbers.Integral) else get_default_dtype()
    return _leaf(target.full(shape, value, to_dtype(dtype).numpy), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _filled(size, 0, _float_dtype(dtype), requires_grad, _check_device(device))


def ones(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _filled(size, 1, _float_dtype(dtype), requires_grad, _check_device(device))


def empty(*size, dtype=None, device=None, requires_grad=False, out=None):
    target = _check_device(device)
    return _leaf(target.empty(_sizes(size), _float_dtype(dtype).numpy), requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return _filled((size,), fill_value, dtype, requires_grad, _check_device(device))


def _like(t, dtype):
    return t.dtype if dtype is None else to_dtype(dtype)


def _like_target(t, device):
    """The target of ``t``'s data, or of ``device`` when one is given."""
    return target_of(t._data) if device is None else _check_device(device)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    return _filled((input.shape,), 0, _like(input, dtype), requires_grad, _like_target(input, device))


def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    return _filled((input.shape,), 1, _like(input, dtype), requires_grad, _like_target(input, device))


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    return _filled((input.shape,), fill_value, _like(input, dtype), requires_grad, _like_target(input, device))


def empty_like(input, *, dtype=None, device=None, requires_grad=False):
    return empty(input.shape, dtype=_like(input, dtype), device=device or input.device, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("step must be nonzero")
    for v in (start, end):
        if not np.isfinite(v):
            raise RuntimeError(f"unsupported range: {start} -> {end}")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = _dtype.int64 if ints else get_default_dtype()
    dtype = to_dtype(dtype)
    n = max(0, int(np.ceil((end - start) / step)))
    data = (start + step * np.arange(n, dtype=np.float64)).astype(dtype.numpy) if dtype.is_floating_point \
        else np.arange(start, end, step, dtype=dtype.numpy)
    return _leaf(target.asarray(data), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _leaf(target.asarray(np.linspace(start, end, steps).astype(_float_dtype(dtype).numpy)), requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    return _leaf(target.asarray(np.eye(n, m, dtype=_float_dtype(dtype).numpy)), requires_grad)


# -- random numbers ------------------------------------------------------------------------------
class Generator:
    """A random stream; ``manual_seed`` makes the default one reproducible."""

    def __init__(self, device="cpu"):
        self._seed = 67280421310721
        self._rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed):
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def initial_seed(self):
        return self._seed

    def seed(self):
        return self.manual_seed(np.random.SeedSequence().entropy % (1 << 63)).initial_seed()


default_generator = Generator()


def manual_seed(seed):
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def _rng(generator):
    return (generator or default_generator)._rng


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    dtype = _float_dtype(dtype)
    return _leaf(target.asarray(_rng(generator).random(_sizes(size), dtype=dtype.numpy)), requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    dtype = _float_dtype(dtype)
    return _leaf(target.asarray(_rng(generator).standard_normal(_sizes(size), dtype=dtype.numpy)), requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    target = _check_device(device)
    if size is None and isinstance(high, (tuple, list)):      # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing 1 required positional argument: 'size'")
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    dtype = to_dtype(dtype) if dtype is not None else _dtype.int64
    data = _rng(generator).integers(low, high, _sizes((size,))).astype(dtype.numpy)
    return _leaf(target.asarray(data), requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False):
    return rand(input.shape, dtype=_like(input, dtype), device=device or input.device, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False):
    return randn(input.shape, dtype=_like(input, dtype), device=device or input.device, requires_grad=requires_grad)


def randint_like(input, low=0, high=None, *, dtype=None, device=None, requires_grad=False):
    return randint(low, high, input.shape, dtype=_like(input, dtype), device=device or input.device,
                   requires_grad=requires_grad)
