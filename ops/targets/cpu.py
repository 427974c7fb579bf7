"""The CPU target: NumPy arrays in host memory, and the ``njit`` loops of ``ops/`` over them.

Everything the Tensor layer does to a CPU tensor's memory passes here: allocation, copies and
casts, views, layout questions, and kernel launches. Elementwise launches have two paths:
``launch`` (any strides, broadcasting, dtype casts, an output given or made) and ``alike``, the
quick path for the common small case (C-contiguous arrays of one shape and dtype, and Python
numbers) that skips all of that. The quick path keeps the one cache of serial loops and the
one cache of number arrays; nothing else keeps copies of them.

A CUDA target has the same methods over ``numba.cuda`` device arrays; hand-written kernel
families (``reduce``, ``index``, ``linalg``, ``loss``, ``shape``, ``optim``, ``sort``, ``scan``,
``count``, ``svd``) are reached
through the target too, so that each target brings its own.
"""
import sys

import numpy as np

from .. import conv, count, embedding, index, linalg, loss, norm, optim, pool, reduce, scan, shape, sort, svd, xent
from ..elementwise import OPS, PARALLEL_MIN, copy_of, element_strides, flat_buffer, strided_view

__all__ = ["CpuTarget", "CPU"]


class CpuTarget:
    """The CPU: NumPy arrays, Numba CPU loops (serial, or ``prange`` from ``PARALLEL_MIN``)."""
    device_type = "cpu"
    array_type = np.ndarray
    # the hand-written kernel families of this target
    reduce, index, linalg, loss, shape = reduce, index, linalg, loss, shape
    optim = optim
    sort, scan, count, svd = sort, scan, count, svd
    conv, pool, norm, embedding = conv, pool, norm, embedding
    xent = xent                        # cross-entropy fused (log_softmax + nll_loss), for nbgrad.compile

    def __repr__(self):
        return "<nbgrad target cpu>"

    # -- allocation -----------------------------------------------------------------------------
    @staticmethod
    def empty(shape, dtype):
        """An uninitialised C-contiguous array (``dtype``: a NumPy dtype)."""
        return np.empty(shape, dtype)

    @staticmethod
    def zeros(shape, dtype):
        return np.zeros(shape, dtype)

    @staticmethod
    def ones(shape, dtype):
        return np.ones(shape, dtype)

    @staticmethod
    def full(shape, value, dtype):
        out = np.empty(shape, dtype)
        out.fill(value)
        return out

    @staticmethod
    def scalar(value, dtype):
        """A new 0-d array holding ``value``."""
        return np.array(value, dtype)

    @staticmethod
    def asarray(host):
        """An array of this target with the values of NumPy array ``host``; on the CPU it is
        ``host`` itself (its memory shared, as ``from_numpy`` promises)."""
        return host

    def number(self, value, dtype):
        """``value`` as a one-element array of ``dtype``, to pass as a loop's operand. The same
        few numbers recur (``x * 2``, ``1 - y``), so their arrays are kept: never write to one.
        Zeros are not kept: ``0``, ``0.0`` and ``-0.0`` are one key, but ``x * -0.0`` is ``-0``."""
        key = (value, dtype)
        arr = _NUMBERS.get(key)
        if arr is None:
            arr = np.array((value,), dtype)
            if value != 0:
                if len(_NUMBERS) > 4096:
                    _NUMBERS.clear()
                _NUMBERS[key] = arr
        return arr

    # -- to and from the host -------------------------------------------------------------------
    @staticmethod
    def to_host(arr):
        """``arr`` as a NumPy array: on the CPU, the array itself (no copy)."""
        return arr

    @staticmethod
    def item(arr):
        """The first element as a Python number."""
        return arr.reshape(-1)[0].item()

    @staticmethod
    def tolist(arr):
        return arr.tolist()

    # -- copies ---------------------------------------------------------------------------------
    @staticmethod
    def copy(arr):
        """A C-contiguous copy."""
        return copy_of(arr)

    @staticmethod
    def contiguous(arr):
        """``arr`` if C-contiguous, else a C-contiguous copy."""
        return arr if arr.flags.c_contiguous else copy_of(arr)

    @staticmethod
    def astype(arr, dtype):
        """``arr``'s values in ``dtype``: ``arr`` itself if it has that dtype, else a new array."""
        if arr.dtype == dtype:
            return arr
        if _half(arr.dtype) or _half(np.dtype(dtype)):    # Numba has no 2-byte floats: NumPy converts
            return arr.astype(dtype)
        out = np.empty(arr.shape, dtype)
        OPS["copy"](out, arr, fresh_out=True)
        return out

    @staticmethod
    def copy_into(out, src, fresh_out=False):
        """Write ``src`` (broadcast to ``out``'s shape, any dtype) into ``out``; overlapping
        memory is read from a copy first (``fresh_out``: ``out`` is new, nothing overlaps)."""
        if _half(out.dtype) or _half(src.dtype):          # Numba has no 2-byte floats: NumPy converts
            np.copyto(out, src if fresh_out or not np.may_share_memory(out, src) else src.copy(), casting="unsafe")
            return out
        return OPS["copy"](out, src, fresh_out=fresh_out)

    # -- views ----------------------------------------------------------------------------------
    @staticmethod
    def as_strided(arr, shape, strides, writeable=True):
        """A view of ``arr``'s memory with ``shape`` and byte ``strides`` (0 where broadcast)."""
        return strided_view(arr, shape, strides, writeable)

    @staticmethod
    def view(arr, shape):
        """``arr`` with ``shape`` over the same memory, or ``None`` when its strides do not allow it."""
        try:
            return arr.reshape(shape, copy=False)
        except ValueError:
            return None

    @staticmethod
    def reshape(arr, shape):
        """``arr`` with ``shape``: a view when the strides allow it, else a copy."""
        return arr.reshape(shape)

    @staticmethod
    def permute(arr, dims=None):
        """A view with the axes in order ``dims`` (default: reversed)."""
        return arr.transpose(dims)

    @staticmethod
    def squeeze(arr, axes):
        """A view without the size-1 axes ``axes``."""
        return arr.squeeze(axes)

    @staticmethod
    def slice(arr, key):
        """A view by basic indexing: ``key`` holds ints, slices, ``None`` and ``Ellipsis`` only."""
        return arr[key]

    flat_buffer = staticmethod(flat_buffer)

    # -- layout ---------------------------------------------------------------------------------
    @staticmethod
    def is_contiguous(arr):
        return arr.flags.c_contiguous

    @staticmethod
    def is_transposed(arr):
        """Whether ``arr`` is laid out column-major only (a transposed C-contiguous matrix)."""
        flags = arr.flags
        return flags.f_contiguous and not flags.c_contiguous

    @staticmethod
    def may_share_memory(a, b):
        return np.may_share_memory(a, b)

    @staticmethod
    def data_ptr(arr):
        return arr.__array_interface__["data"][0]

    element_strides = staticmethod(element_strides)

    @staticmethod
    def is_private(arr):
        """Whether ``arr`` is writable, C-contiguous, and named by one holder only (besides
        this call), or a view spanning all of such a base: memory no one else can see, which
        the engine may hand on as ``.grad`` without copying. Call it as
        ``target.is_private(holder.attr)``, with no other name for the array."""
        if not (arr.flags.writeable and arr.flags.c_contiguous and sys.getrefcount(arr) == _HELD_ONCE):
            return False
        base = arr.base
        return base is None or (type(base) is np.ndarray and base.base is None and base.size == arr.size
                                and sys.getrefcount(base) == _HELD_BASE)

    # -- launches -------------------------------------------------------------------------------
    @staticmethod
    def run(kernel, out, *arrays, fresh_out=False):
        """Run elementwise ``kernel`` (a name of the op table's kernels) into ``out`` over
        ``arrays`` prepared by the caller (each of ``out``'s dtype, broadcasting to it).
        ``fresh_out``: ``out`` was just allocated, so no input can overlap it."""
        return OPS[kernel](out, *arrays, fresh_out=fresh_out)

    def launch(self, kernel, operands, shape, dtype, out_dtype=None, out=None):
        """Run ``kernel`` over ``operands`` (arrays of any dtype and numbers, broadcasting to
        ``shape``) computed in ``dtype``, into ``out`` or a new array of ``shape`` and
        ``out_dtype`` (default ``dtype``); returns the output."""
        arrays = []
        for x in operands:
            if type(x) is _ndarray:
                arrays.append(x if x.dtype == dtype else self.astype(x, dtype))
            else:
                arr = _NUMBERS.get((x, dtype))
                arrays.append(arr if arr is not None else self.number(x, dtype))
        if out is not None:
            return OPS[kernel](out, *arrays)
        out = np.empty(shape, dtype if out_dtype is None else out_dtype)
        return OPS[kernel](out, *arrays, fresh_out=True)

    @staticmethod
    def alike(kernel, operands, dtype=None, out_dtype=None, floating=False):
        """``launch``'s quick path, for operands that need no promotion, broadcasting or
        strides: C-contiguous arrays of one shape and dtype, and Python numbers that cannot
        change a floating dtype. ``None`` when the operands are not that case (or, with
        ``floating``, the result is floating and the arrays are not); ``dtype`` if given must
        be the arrays' dtype."""
        data = None
        pattern = ""
        flat = []
        for x in operands:
            t = type(x)
            if t is _ndarray:
                if data is None:
                    data = x
                elif x.dtype != data.dtype or x.shape != data.shape:
                    return None
                if not x.flags.c_contiguous:
                    return None
                pattern += "c"
                flat.append(x.ravel())          # a view of a C-contiguous array; 2.5x quicker than reshape(-1)
            elif t is float or t is int:
                pattern += "s"
                flat.append(x)
            else:
                return None
        if data is None:
            return None
        np_dtype = data.dtype
        if dtype is not None and dtype != np_dtype:
            return None
        if np_dtype.itemsize == 2 and np_dtype.kind != "i":    # float16, bfloat16: the general path converts
            return None
        if floating and np_dtype.kind != "f":
            return None
        if "s" in pattern:
            if np_dtype.kind != "f":
                return None
            for i, p in enumerate(pattern):
                if p == "s":
                    arr = _NUMBERS.get((flat[i], np_dtype))
                    flat[i] = arr if arr is not None else CPU.number(flat[i], np_dtype)
        out = np.empty(data.shape, np_dtype if out_dtype is None else out_dtype)
        size = out.size
        # Elementwise.contiguous and number() written out here: going through them cost the
        # chain-of-100-ops workload 7% (commit be87910)
        if size and size < PARALLEL_MIN:
            key = (kernel, pattern)
            loop = _SERIAL_LOOPS.get(key)
            if loop is None:
                loop = _SERIAL_LOOPS[key] = OPS[kernel].kernel(pattern, False)
            loop(out.ravel(), *flat)
        elif size:
            OPS[kernel].contiguous(out, pattern, flat)
        return out


_NUMBERS = {}
_SERIAL_LOOPS = {}
_ndarray = np.ndarray


def _half(dtype):
    """float16 or bfloat16 (ml_dtypes), which Numba's loops cannot take."""
    return dtype.itemsize == 2 and dtype.kind in "fV"


def _probe(arr):
    base = arr.base
    return sys.getrefcount(arr), sys.getrefcount(base)


class _Holder:
    __slots__ = ("attr",)


def _calibrate():
    """What ``sys.getrefcount`` says inside ``is_private`` of an array named by one holder's
    attribute and passed as ``is_private(holder.attr)``, and of its base held by it alone:
    measured through the same kind of call, since it differs between Pythons."""
    h = _Holder()
    h.attr = np.empty(2)[:]
    return _probe(h.attr)


_HELD_ONCE, _HELD_BASE = _calibrate()
CPU = CpuTarget()
