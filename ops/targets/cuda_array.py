"""``DeviceArray``: a strided view of a flat ``numba.cuda`` device buffer.

numba's ``DeviceNDArray`` has no general ``as_strided``, its ``transpose`` copies, and its
``__array__`` silently copies to the host. So the CUDA target keeps each tensor's memory as a
1-D device buffer of its dtype and describes the tensor as ``offset`` (elements) + ``shape``
+ ``strides`` (bytes, as NumPy's): every view is metadata only, and kernels receive the
buffer, the offset and element strides. View arithmetic is NumPy's own, run on a *probe*: a
NumPy array with the same shape and strides over a one-element host buffer that is never read,
so slicing, permuting, reshaping without copy and the layout flags mean exactly what they
mean on the CPU.
"""
import numpy as np

__all__ = ["DeviceArray", "probe"]

_BACKING = {}
# NumPy's array attributes that the CPU target's kernels and planners read
_NUMPY_ONLY = frozenset(["flags", "reshape", "ravel", "T", "astype", "copy", "fill", "transpose", "swapaxes",
                         "squeeze", "view", "tolist", "item", "base", "ctypes", "data", "__array_interface__", "sum",
                         "max", "min", "any", "all", "nonzero", "take", "put", "flat", "real", "imag"])


def probe(shape, strides, dtype):
    """A host array with ``shape``/``strides`` whose data pointer is element 0 of a dummy
    buffer; only its metadata may be used (its elements are never read or written)."""
    dtype = np.dtype(dtype)
    base = _BACKING.get(dtype)
    if base is None:
        base = _BACKING[dtype] = np.zeros(1, dtype)
    return np.lib.stride_tricks.as_strided(base, shape, strides, writeable=True)


def _offset_of(view, dtype):
    """``view``'s first element, in elements from the probe buffer's first."""
    start = _BACKING[np.dtype(dtype)].__array_interface__["data"][0]
    return (view.__array_interface__["data"][0] - start) // np.dtype(dtype).itemsize


class DeviceArray:
    """An nbgrad CUDA tensor's array: ``buf`` (1-D device array), ``offset``, ``shape``, ``strides``."""
    __slots__ = ("buf", "offset", "shape", "strides", "dtype", "writeable", "_contiguous")
    __array_priority__ = -1

    def __init__(self, buf, offset, shape, strides, writeable=True):
        self.buf, self.offset = buf, int(offset)
        self.shape, self.strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
        self.dtype = np.dtype(buf.dtype)
        self.writeable = writeable
        self._contiguous = None

    @property
    def c_contiguous(self):
        """Whether C-contiguous (the metadata never changes: asked once)."""
        if self._contiguous is None:
            self._contiguous = self.probe().flags.c_contiguous
        return self._contiguous

    @property
    def __cuda_array_interface__(self):
        """The CUDA Array Interface (version 3) of this view: CuPy, PyTorch and numba read it
        zero-copy. (The simulator's buffers are host arrays and have none.)"""
        base = self.buf.__cuda_array_interface__
        return {"shape": self.shape, "strides": None if self.c_contiguous else self.strides,
                "typestr": self.dtype.str, "data": (base["data"][0] + self.offset * self.itemsize, not self.writeable),
                "version": 3, "stream": base.get("stream")}

    @classmethod
    def contiguous_over(cls, buf, shape, offset=0):
        """A C-contiguous array of ``shape`` over ``buf`` from element ``offset``."""
        item = np.dtype(buf.dtype).itemsize
        strides, step = [], item
        for n in reversed(shape):
            strides.append(step)
            step *= max(n, 1)
        return cls(buf, offset, shape, tuple(reversed(strides)))

    # NumPy-like metadata, which the Tensor layer reads directly
    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def itemsize(self):
        return self.dtype.itemsize

    @property
    def nbytes(self):
        return self.size * self.itemsize

    def element_strides(self):
        return tuple(s // self.itemsize for s in self.strides)

    def probe(self):
        return probe(self.shape, self.strides, self.dtype)

    def from_probe(self, view, writeable=None):
        """A ``DeviceArray`` over the same buffer with ``view``'s metadata (``view``: a probe
        derived from ``self.probe()``)."""
        return DeviceArray(self.buf, self.offset + _offset_of(view, self.dtype), view.shape, view.strides,
                           self.writeable if writeable is None else writeable)

    def __getattr__(self, name):
        if name in _NUMPY_ONLY:                # a CPU kernel was handed a CUDA array
            raise NotImplementedError(f"nbgrad: this operation is not implemented for cuda yet (a CPU kernel asked "
                                      f"a CUDA array for '.{name}'); move the tensors to the CPU with .cpu()")
        raise AttributeError(f"'DeviceArray' object has no attribute '{name}'")

    def __array__(self, *args, **kwargs):
        raise TypeError("nbgrad: a CUDA array is not converted to a host array implicitly; use .cpu()")

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, strides={self.strides}, offset={self.offset})"
