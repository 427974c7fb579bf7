"""The CUDA target: ``DeviceArray`` views over ``numba.cuda`` device buffers, and kernels
generated from the op table (``cuda_codegen``) or written by hand (``cuda_kernels``).

It has the CPU target's methods, so the Tensor layer runs unchanged on it. Registered (in
``targets/__init__``) only when ``numba.cuda`` finds a GPU or runs its simulator
(``NUMBA_ENABLE_CUDASIM=1``). Data stays on the device: ``to_host``, ``item`` and ``tolist``
are the only copies to the host, and they happen where the user asks for host data.

Hand-written kernel families: ``reduce.sum`` (sum and mean) and ``linalg`` (``bmm``,
``add_rows``) exist; every other member of a family raises ``NotImplementedError`` naming
itself, rather than running on the CPU behind the user's back.
"""
import math
import numbers

import numpy as np
from numba import cuda

from . import cuda_kernels as hand
from . import cuda_cublas, cuda_nn, cuda_nonzero, cuda_optim, cuda_prod
from .cuda_count import Count
from .cuda_layers import families as _layer_families
from .cuda_scan import Scan
from .cuda_sort import Sort
from .cuda_array import DeviceArray
from .cuda_codegen import KERNELS, accumulation
from ..optim import check_sizes
from ..table import ACCUMULATIONS
from ..reduce import check_saved as _check_saved, keep_shape as _keep_shape    # host-side shape checks

__all__ = ["CudaTarget", "available"]

_THREADS = 32 if hand.SIMULATED else 256      # threads per block of elementwise launches


def available():
    """Whether numba.cuda can run kernels here (a GPU, or the simulator)."""
    try:
        return bool(cuda.is_available())
    except Exception:                          # no driver, no runtime: no CUDA
        return False


def _not_implemented(family, name):
    def missing(*args, **kwargs):
        raise NotImplementedError(f"nbgrad: '{family}.{name}' is not implemented for cuda yet "
                                  "(move the tensors to the CPU with .cpu())")
    return missing


class _Family:
    """A kernel family of the CUDA target: the members it has, and a clear error for the rest."""

    def __init__(self, name, **members):
        self._name = name
        self.__dict__.update(members)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _not_implemented(self._name, name)


def _element_strides(arr, shape):
    """``arr``'s strides broadcast to ``shape``, in elements (0 where broadcast); one element
    (a number's array) is read everywhere, as the CPU loops read it."""
    if arr.size == 1:
        return [0] * len(shape)
    pad = len(shape) - arr.ndim
    if pad < 0 or any(n != 1 and n != shape[d + pad] for d, n in enumerate(arr.shape)):
        raise ValueError(f"an operand of shape {arr.shape} does not broadcast to {tuple(shape)}")
    item = arr.itemsize
    return [0 if d < pad or arr.shape[d - pad] == 1 else arr.strides[d - pad] // item for d in range(len(shape))]


def _grid(size):
    threads = min(_THREADS, max(size, 1))
    return hand.blocks_for(size, threads), threads


class CudaTarget:
    """CUDA device memory (``DeviceArray``) and ``numba.cuda`` kernels."""
    device_type = "cuda"
    device_str = "cuda:0"                      # one device: the current one
    array_type = DeviceArray

    def __init__(self):
        self._numbers = {}
        self._unused = {}
        self.reduce = _Family("reduce", sum=self._sum, prod=self._prod, var=self._var, logsumexp=self._logsumexp,
                              count_zeros=self._count_zeros, max=self._max, index_backward=self._index_backward,
                              distribute_backward=self._distribute_backward, keep_shape=_keep_shape,
                              softmax=self._softmax, softmax_backward=self._softmax_backward,
                              check_saved=_check_saved, prod_backward=self._prod_backward)
        self.linalg = _Family("linalg", bmm=self._bmm, add_rows=self._add_rows)
        self.index = _Family("index", gather=self._gather, scatter=self._scatter, gather_dim=self._gather_dim,
                             scatter_dim=self._scatter_dim, nonzero=self._nonzero)
        self.loss = _Family("loss", nll_forward=self._nll_forward, nll_backward=self._nll_backward)
        self.shape = _Family("shape", flip=self._flip)
        self.optim = _Family("optim", step=self._optim_step)
        self.conv, self.pool, self.norm, self.embedding = _layer_families(self)
        self.sort, self.scan, self.count = Sort(self), Scan(self), Count(self)

    def __repr__(self):
        return "<nbgrad target cuda>"

    def __getattr__(self, name):
        """A kernel family the CPU target has and this one has not built (sort, scan, ...): each
        member raises the clear ``NotImplementedError`` instead of an AttributeError."""
        from .cpu import CpuTarget
        if not name.startswith("_") and isinstance(getattr(CpuTarget, name, None), type(np)):
            return _Family(name)
        raise AttributeError(f"'CudaTarget' object has no attribute '{name}'")

    def _optim_step(self, family, p, grad, states, hyper):
        """``family``'s fused update in one launch of its kernel (``cuda_optim``, from the same
        rule as the CPU loop): ``p`` and its ``states`` updated in place on the device, through a
        contiguous copy written back where one is strided or of another dtype."""
        check_sizes(p, grad, states)
        if p.size == 0:
            return
        dtype = p.dtype
        arrays = [p, *(s for s in states if s is not None)]
        work = [self.contiguous(self.astype(a, dtype)) for a in arrays]
        g = self.contiguous(self.astype(grad, dtype))
        unused = self._unused.get(dtype)
        if unused is None:
            unused = self._unused[dtype] = cuda.device_array(1, dtype)     # a state the settings never read
        it = iter(work[1:])
        flats = [_flat_buf(next(it)) if s is not None else unused for s in states]
        n = p.size
        threads = min(_THREADS, n)
        cuda_optim.kernel(family)[-(-n // threads), threads](n, _flat_buf(work[0]), _flat_buf(g), *flats,
                                                               tuple(dtype.type(v) for v in hyper))
        for a, w in zip(arrays, work):
            if w is not a:
                self.copy_into(a, w)

    # -- the device -----------------------------------------------------------------------------
    @staticmethod
    def is_available():
        return available()

    @staticmethod
    def device_count():
        return len(cuda.gpus) if available() else 0

    @staticmethod
    def synchronize():
        cuda.synchronize()

    @staticmethod
    def device_name():
        if hand.SIMULATED:
            return "SIMULATOR"
        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)

    @staticmethod
    def implementation():
        """Which numba CUDA runs the kernels (for ``python -m nbgrad info``)."""
        if hand.SIMULATED:
            return "numba.cuda simulator (NUMBA_ENABLE_CUDASIM=1)"
        try:
            import numba_cuda
            return f"numba-cuda {numba_cuda.__version__}"
        except ImportError:
            return "numba.cuda (built into numba)"

    # -- allocation -----------------------------------------------------------------------------
    @staticmethod
    def empty(shape, dtype):
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        n = 1
        for d in shape:
            n *= d
        return DeviceArray.contiguous_over(cuda.device_array(max(n, 1), np.dtype(dtype)), shape)

    def full(self, shape, value, dtype):
        out = self.empty(shape, dtype)
        if out.size:
            blocks, threads = _grid(out.size)
            hand.fill_kernel[blocks, threads](out.buf, out.size, np.dtype(dtype).type(value))
        return out

    def zeros(self, shape, dtype):
        return self.full(shape, 0, dtype)

    def ones(self, shape, dtype):
        return self.full(shape, 1, dtype)

    def scalar(self, value, dtype):
        return self.full((), value, dtype)

    @staticmethod
    def asarray(host):
        """A new device array with the values of host array ``host`` (one copy to the device)."""
        host = np.asarray(host)
        if not host.flags.c_contiguous:
            host = host.copy(order="C")        # (np.ascontiguousarray would make a 0-d array 1-d)
        flat = host.reshape(-1) if host.size else np.zeros(1, host.dtype)
        return DeviceArray.contiguous_over(cuda.to_device(flat), host.shape)

    @staticmethod
    def wrap(obj):
        """A ``DeviceArray`` over a numba device array or any object with the CUDA Array
        Interface (CuPy, PyTorch CUDA): its memory shared when C-contiguous, else copied."""
        dev = obj if getattr(obj, "__cuda_ndarray__", False) else cuda.as_cuda_array(obj)
        if dev.size and not dev.is_c_contiguous():
            dev = dev.copy_to_host()               # strided foreign memory: one copy through the host
            dev = cuda.to_device(dev.copy())
        flat = dev.reshape(dev.size) if dev.size else cuda.device_array(1, dev.dtype)
        return DeviceArray.contiguous_over(flat, dev.shape)

    @staticmethod
    def number(value, dtype):
        """``value`` as a NumPy scalar of ``dtype``: a table kernel's operand passed by value
        (nothing allocated or copied to the device)."""
        return np.dtype(dtype).type(value)

    def _constant(self, value, dtype):
        """``value`` as a one-element device array of ``dtype``, for the hand kernels that read
        one (kept: never write to one)."""
        key = (value, type(value), np.dtype(dtype))
        arr = self._numbers.get(key)
        if arr is None:
            if len(self._numbers) > 4096:
                self._numbers.clear()
            arr = self._numbers[key] = self.full((1,), value, dtype)
        return arr

    # -- to the host ----------------------------------------------------------------------------
    def to_host(self, arr):
        """A new NumPy array with ``arr``'s values (a copy from the device)."""
        if arr.size == 0:
            return np.empty(arr.shape, arr.dtype)
        c = self.contiguous(arr)
        return c.buf[c.offset:c.offset + c.size].copy_to_host().reshape(arr.shape)

    @staticmethod
    def item(arr):
        return arr.buf[arr.offset:arr.offset + 1].copy_to_host()[0].item()

    def tolist(self, arr):
        return self.to_host(arr).tolist()

    # -- copies ---------------------------------------------------------------------------------
    def copy(self, arr):
        out = self.empty(arr.shape, arr.dtype)
        return self._elementwise("copy", out, (arr,), fresh_out=True)

    def contiguous(self, arr):
        return arr if self.is_contiguous(arr) else self.copy(arr)

    def astype(self, arr, dtype):
        if arr.dtype == dtype:
            return arr
        return self._elementwise("copy", self.empty(arr.shape, dtype), (arr,), fresh_out=True)

    def copy_into(self, out, src, fresh_out=False):
        return self._elementwise("copy", out, (src,), fresh_out=fresh_out)

    # -- views ----------------------------------------------------------------------------------
    @staticmethod
    def as_strided(arr, shape, strides, writeable=True):
        return DeviceArray(arr.buf, arr.offset, shape, strides, writeable and arr.writeable)

    @staticmethod
    def view(arr, shape):
        try:
            return arr.from_probe(arr.probe().reshape(shape, copy=False))
        except ValueError:
            return None

    def reshape(self, arr, shape):
        v = self.view(arr, shape)
        if v is not None:
            return v
        c = self.copy(arr)
        return c.from_probe(c.probe().reshape(shape))

    @staticmethod
    def permute(arr, dims=None):
        return arr.from_probe(arr.probe().transpose(dims))

    @staticmethod
    def squeeze(arr, axes):
        return arr.from_probe(arr.probe().squeeze(axes))

    @staticmethod
    def slice(arr, key):
        key = key if isinstance(key, tuple) else (key,)
        if not any(k is Ellipsis for k in key):
            key = key + (Ellipsis,)            # a view even where every dim is indexed (NumPy: a scalar)
        return arr.from_probe(arr.probe()[key])

    @staticmethod
    def flat_buffer(arr):
        if arr.size == 0:
            return DeviceArray(arr.buf, arr.offset, (0,), (arr.itemsize,))
        if any(s < 0 for s in arr.strides):
            raise ValueError("negative strides are not supported")
        extent = 1 + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) // arr.itemsize
        return DeviceArray(arr.buf, arr.offset, (extent,), (arr.itemsize,), arr.writeable)

    # -- layout ---------------------------------------------------------------------------------
    @staticmethod
    def is_contiguous(arr):
        return arr.c_contiguous

    @staticmethod
    def is_transposed(arr):
        flags = arr.probe().flags
        return flags.f_contiguous and not flags.c_contiguous

    @staticmethod
    def may_share_memory(a, b):
        return isinstance(a, DeviceArray) and isinstance(b, DeviceArray) and a.buf is b.buf

    @staticmethod
    def data_ptr(arr):
        buf = arr.buf
        iface = getattr(buf, "__cuda_array_interface__", None)
        if iface is None:                      # the simulator's arrays are host arrays
            iface = buf._ary.__array_interface__
        return iface["data"][0] + arr.offset * arr.itemsize

    @staticmethod
    def element_strides(arr, shape):
        return _element_strides(arr, shape)

    @staticmethod
    def is_private(arr):
        """Never claimed: the engine copies a CUDA gradient it would otherwise hand on."""
        return False

    # -- launches -------------------------------------------------------------------------------
    def run(self, kernel, out, *arrays, fresh_out=False):
        return self._elementwise(kernel, out, arrays, fresh_out)

    def launch(self, kernel, operands, shape, dtype, out_dtype=None, out=None):
        arrays = [(x if x.dtype == dtype else self.astype(x, dtype)) if isinstance(x, DeviceArray)
                  else self.number(x, dtype) if isinstance(x, (numbers.Number, np.generic)) else x
                  for x in operands]
        if out is not None:
            return self._elementwise(kernel, out, arrays, False)
        out = self.empty(shape, dtype if out_dtype is None else out_dtype)
        return self._elementwise(kernel, out, arrays, True)

    @staticmethod
    def alike(kernel, operands, dtype=None, out_dtype=None, floating=False):
        """The CPU's quick path has no CUDA twin: ``launch`` serves every case."""
        return None

    def _elementwise(self, name, out, arrays, fresh_out):
        """Run table kernel ``name`` into ``out`` over ``arrays`` (device arrays of ``out``'s
        shape or broadcasting to it, and numbers: NumPy scalars, passed by value): the
        contiguous grid-stride kernel when every operand is contiguous or one element, else
        the strided one."""
        if not isinstance(out, DeviceArray) or not all(isinstance(x, (DeviceArray, np.generic)) for x in arrays):
            from . import common_target
            common_target([out, *(x for x in arrays if not isinstance(x, np.generic))])   # PyTorch's error
            raise TypeError("the CUDA target was given a host value where it needs a device array")
        size = out.size
        if size == 0:
            return out
        shape = out.shape
        if not fresh_out:
            arrays = [self.copy(x) if (isinstance(x, DeviceArray) and x.buf is out.buf and x.ndim and
                                       (x.offset, x.shape, x.strides) != (out.offset, out.shape, out.strides))
                      else x for x in arrays]
        strides = [None if isinstance(x, np.generic) else _element_strides(x, shape) for x in arrays]
        k = KERNELS[name]
        blocks, threads = _grid(size)
        if self.is_contiguous(out):
            pattern = ""
            for x, st in zip(arrays, strides):
                if st is None:
                    pattern += "v"
                elif x.size == size and self.is_contiguous(x):
                    pattern += "c"
                elif not any(st):
                    pattern += "s"
                else:
                    break
            else:
                args = []
                for x in arrays:
                    args += [x] if isinstance(x, np.generic) else [x.buf, x.offset]
                k.kernel(pattern)[blocks, threads](size, out.buf, out.offset, *args)
                return out
        dims = tuple(shape) or (1,)
        args = []
        for x, st in zip(arrays, strides):
            args += [x] if st is None else [x.buf, x.offset, tuple(st) or (0,)]
        ostr = tuple(_element_strides(out, shape)) or (0,)
        layout = "strided" if all(st is not None for st in strides) else \
            "strided_" + "".join("v" if st is None else "a" for st in strides)
        k.kernel(layout)[-(-size // threads), threads](size, dims, out.buf, out.offset, ostr, *args)
        return out

    def _flip(self, out, x, dims):
        """``out[...] = x`` reversed along ``dims``: the copy kernel reading ``x`` through
        negative strides from its mirrored first element."""
        if out.size == 0:
            return out
        offset, strides = x.offset, list(x.strides)
        for d in dims:
            offset += (x.shape[d] - 1) * strides[d] // x.itemsize
            strides[d] = -strides[d]
        return self._elementwise("copy", out, (DeviceArray(x.buf, offset, x.shape, strides),), True)

    # -- reductions -----------------------------------------------------------------------------
    def _accumulate(self, name, x, dims, out_dtype, scale=1, center=None):
        """Accumulation ``name`` of the op table over ``dims`` (sorted, distinct), keepdim shape:
        floats accumulate in float64, the rest in int64, as on the CPU. ``center``: a float64
        device array, one value per output (the mean for var, the maximum for logsumexp)."""
        out_dtype = np.dtype(out_dtype)
        keep = _keep_shape(x.shape, dims)
        out = self.empty(keep, out_dtype)
        nout = out.size
        if nout == 0:
            return out
        kshape, kstr, rshape, rstr, nred = _plan(x, dims)
        floating = x.dtype.kind == "f" or out_dtype.kind == "f"
        parts = max(1, min(-(-nred // (hand.THREADS * 4)), 4 if hand.SIMULATED else 64))
        partials = cuda.device_array(nout * parts if parts > 1 else 1, np.float64 if floating else np.int64)
        center = self._constant(0.0, np.float64) if center is None else center
        scale = float(scale) if floating else int(scale)
        mod = accumulation(ACCUMULATIONS[name].kernel or name, hand.THREADS)
        first, combine = (mod.float_first, mod.float_combine) if floating else (mod.int_first, mod.int_combine)
        first[nout * parts, hand.THREADS](x.buf, x.offset, kshape, kstr, rshape, rstr, nred, parts, out.buf,
                                          out.offset, scale, _flat_buf(center), partials)
        if parts > 1:
            combine[nout, hand.THREADS](partials, parts, out.buf, out.offset, scale, _flat_buf(center))
        return out

    def _sum(self, x, dims, out_dtype, scale=1):
        return self._accumulate("sum", x, dims, out_dtype, scale)

    def _prod(self, x, dims, out_dtype):
        return self._accumulate("prod", x, dims, out_dtype)

    def _var(self, x, dims, correction, root=False):
        """(variance, or with ``root`` the standard deviation, and the float64 mean), keepdim."""
        n = 1
        for d in dims:
            n *= x.shape[d]
        mean = self._accumulate("sum", x, dims, np.float64, 1.0 / n if n else math.nan)
        dof = n - correction
        scale = 1.0 / dof if dof > 0 else math.inf
        return self._accumulate("std" if root else "var", x, dims, x.dtype, scale, self.contiguous(mean)), mean

    def _logsumexp(self, x, dims):
        if x.size == 0:
            center = self.zeros(_keep_shape(x.shape, dims), np.float64)
        else:
            center = self.astype(self._max(x, dims)[0], np.dtype(np.float64))
        return self._accumulate("logsumexp", x, dims, x.dtype, 1, center)

    def _count_zeros(self, x):
        return int(self.item(self._accumulate("count_zeros", x, tuple(range(x.ndim)), np.int64)))

    def _max(self, x, dims, smallest=False, ordered=False):
        """(values, indices) of the maximum (``smallest``: minimum) over ``dims``, keepdim
        shapes; an index is the flat position in the reduced block (C order over ``dims``)."""
        keep = _keep_shape(x.shape, dims)
        vals, idx = self.empty(keep, x.dtype), self.empty(keep, np.int64)
        if vals.size:
            kshape, kstr, rshape, rstr, nred = _plan(x, dims)
            hand.extreme_kernel(x.dtype.kind == "f")[vals.size, hand.THREADS](
                x.buf, x.offset, kshape, kstr, rshape, rstr, nred, smallest, vals.buf, idx.buf)
        return vals, idx

    def _index_backward(self, g, idx, shape, dim, dtype):
        """Zeros of ``shape`` with ``g`` (keepdim shape) at ``idx`` along ``dim``; an index
        outside the dim is PyTorch's error (it was saved, and may have been changed since)."""
        gx = self.zeros(shape, dtype)
        if gx.size:
            if idx.size != g.size or idx.dtype != np.int64:
                raise RuntimeError("max/min backward: the indices saved for backward were given .data of another "
                                   f"shape or dtype ({idx.dtype} of shape {list(idx.shape)})")
            length, _, inner = _line(shape, dim)
            flat_idx = self.contiguous(idx)
            g = self.contiguous(self.astype(g, np.dtype(dtype)))
            n = flat_idx.size
            bad = cuda.to_device(np.array([n], np.int64))
            threads = min(_THREADS, n)
            hand.index_backward_kernel[-(-n // threads), threads](_flat_buf(g), _flat_buf(flat_idx), gx.buf, length,
                                                                  inner, bad)
            first = int(bad.copy_to_host()[0])
            if first < n:
                raise RuntimeError(f"index {self.item(self.slice(self.reshape(flat_idx, (-1,)), (first,)))} is out "
                                   f"of bounds for dimension {dim} with size {length}")
        return gx

    def _prod_backward(self, g, x, dims):
        """``g`` (keepdim shape) times the product of the other elements of each reduced slice
        of ``x`` (exact with zeros): a new array of x's shape."""
        _check_saved("prod backward", g, x, dims)
        gx = self.empty(x.shape, x.dtype)
        if gx.size == 0:
            return gx
        kshape, kstr, rshape, rstr, nred = _plan(x, dims)
        _, gkstr, _, grstr, _ = _plan(gx, dims)
        g = self.contiguous(g)
        n = g.size
        threads = min(_THREADS, n)
        cuda_prod.prod_backward_kernel[-(-n // threads), threads](x.buf, x.offset, kshape, kstr, rshape, rstr, nred,
                                                                  _flat_buf(g), gx.buf, gkstr, grstr, n)
        return gx

    def _distribute_backward(self, g, x, m, dims, nan_too=False):
        """``g`` shared evenly among the positions of ``x`` equal to its extreme ``m`` (with
        ``nan_too``, among the NaNs where ``m`` is NaN): table kernels and a sum."""
        _check_saved("max/min backward", g, x, dims, m)
        shape, dtype = x.shape, x.dtype
        hit = self.launch("eq", (x, m), shape, dtype)
        if nan_too:
            nan_x = self.launch("ne", (x, x), shape, dtype)
            nan_m = self.launch("ne", (m, m), m.shape, dtype)
            hit = self.launch("logical_or", (hit, self.launch("logical_and", (nan_x, nan_m), shape, dtype)),
                              shape, dtype)
        count = self._sum(hit, dims, dtype)
        share = self.launch("div", (g, count), count.shape, dtype)
        return self.launch("mul", (hit, share), shape, dtype)

    # -- matrix products ------------------------------------------------------------------------
    def _bmm(self, a, b):
        """``a @ b`` for 3-D arrays of one dtype and batch size, any strides; a new array."""
        nb, n, k = a.shape
        m = b.shape[2]
        out = self.empty((nb, n, m), a.dtype)
        if out.size == 0:
            return out
        if k == 0:
            return self.full((nb, n, m), 0, a.dtype)
        if cuda_cublas.ENABLED and a.dtype.kind == "f" and a.dtype.itemsize >= 4:
            return cuda_cublas.bmm(a, b, out)
        T = hand.TILE
        grid = (-(-m // T), -(-n // T), nb)
        hand.matmul_kernel(a.dtype.kind == "f")[grid, (T, T)](
            out.buf, out.offset, tuple(out.element_strides()), a.buf, a.offset, tuple(a.element_strides()),
            b.buf, b.offset, tuple(b.element_strides()), n, m, k)
        return out

    def _add_rows(self, out, v):
        """``out[i, :] += v``: a linear layer's bias, added in place."""
        return self._elementwise("add", out, (out, v), fresh_out=False)

    # -- advanced indexing ----------------------------------------------------------------------
    @staticmethod
    def _plan_args(p):
        """A host-side plan (``ops/index.py``) as kernel arguments: shapes and strides as
        tuples, the offset table copied to the device once."""
        pre_shape, pre_strides = (tuple(int(v) for v in a) for a in p.pre)
        post_shape, post_strides = (tuple(int(v) for v in a) for a in p.post)
        npost = 1
        for n in post_shape:
            npost *= n
        return pre_shape, pre_strides, cuda.to_device(p.adv), post_shape, post_strides, npost

    def _gather(self, out, src, p):
        """``out`` (C-contiguous, ``p.shape``) = ``src`` read as planned; a plan with an index
        out of range raises PyTorch's IndexError."""
        if out.size == 0:
            return out
        if p.bad:
            raise p.error()
        n = out.size
        threads = min(_THREADS, n)
        hand.gather_kernel[-(-n // threads), threads](_flat_buf(out), src.buf, src.offset, *self._plan_args(p), n)
        return out

    def _scatter(self, dst, vals, p, accumulate=False):
        """``dst[planned positions] = vals`` (``accumulate``: ``+=``, atomic adds)."""
        if vals.size == 0:
            return dst
        if p.bad:
            raise p.error()
        vals = self.contiguous(vals)
        args = self._plan_args(p)
        if accumulate:
            n = vals.size
            kernel = hand.scatter_add_kernel
        else:
            n = 1
            for v in p.pre[0]:
                n *= int(v)
            n *= args[-1]
            kernel = hand.scatter_kernel
        threads = min(_THREADS, n)
        kernel[-(-n // threads), threads](dst.buf, dst.offset, _flat_buf(vals), *args, n)
        return dst

    def _nonzero(self, x):
        """Coordinates of ``x``'s nonzero elements (any strides), ``(n, x.ndim)`` int64 in C
        order (``cuda_nonzero``); ``n`` is read back to size the output."""
        if x.size == 0:
            return self.empty((0, x.ndim), np.int64)
        flat = x if x.ndim else self.reshape(x, (1,))
        shape, strides, n = tuple(flat.shape), tuple(flat.element_strides()), flat.size
        threads = hand.THREADS
        blocks = -(-n // threads)
        counts, starts = cuda.device_array(blocks, np.int64), cuda.device_array(blocks + 1, np.int64)
        cuda_nonzero.count_kernel[blocks, threads](flat.buf, flat.offset, shape, strides, n, counts)
        cuda_nonzero.scan_kernel[1, threads](counts, blocks, starts)
        total = int(starts[blocks:].copy_to_host()[0])
        out = self.empty((total, x.ndim), np.int64)
        if total and x.ndim:
            cuda_nonzero.fill_kernel[blocks, threads](flat.buf, flat.offset, shape, strides, n, starts, out.buf)
        return out

    def _checked_index(self, index, dim, size):
        """``index`` as a flat C-contiguous int64 device array, every value checked to lie in
        ``[0, size)`` before anything is read or written (PyTorch's error otherwise)."""
        flat = self.contiguous(self.astype(index, np.dtype(np.int64)))
        n = flat.size
        bad = cuda.to_device(np.array([n], np.int64))
        threads = min(_THREADS, n)
        hand.check_index_kernel[-(-n // threads), threads](_flat_buf(flat), size, bad)
        first = int(bad.copy_to_host()[0])
        if first < n:
            value = self.item(self.slice(self.reshape(flat, (-1,)), (first,)))
            raise RuntimeError(f"index {value} is out of bounds for dimension {dim} with size {size}")
        return flat

    def _gather_dim(self, out, src, dim, index):
        """``out[i][j][k] = src[i][index[i][j][k]][k]`` (``dim == 1``); any strides."""
        if index.size == 0:
            return out
        size = src.shape[dim]
        flat = self._checked_index(index, dim, size)
        n = flat.size
        threads = min(_THREADS, n)
        hand.gather_dim_kernel[-(-n // threads), threads](
            out.buf, out.offset, tuple(out.element_strides()), src.buf, src.offset, tuple(src.element_strides()),
            _flat_buf(flat), index.shape, dim, size, n)
        return out

    def _scatter_dim(self, dst, dim, index, src, reduce=None, check_first=False):
        """``dst[i][index[i][j][k]][k] = src[i][j][k]`` (``reduce``: "add"/"multiply");
        every index is checked before any write, so ``check_first`` always holds."""
        if index.size == 0:
            return dst
        size = dst.shape[dim]
        flat = self._checked_index(index, dim, size)
        istr = tuple(flat.element_strides())      # C order, of index's shape
        sstr = (0,) * index.ndim if src.ndim == 0 else tuple(src.element_strides())
        nlines = index.size // index.shape[dim]
        threads = min(_THREADS, max(nlines, 1))
        hand.scatter_dim_kernel[-(-nlines // threads), threads](
            dst.buf, dst.offset, tuple(dst.element_strides()), _flat_buf(flat), istr, index.shape, dim, src.buf,
            src.offset, sstr, {None: 0, "add": 1, "multiply": 2}[reduce], size, nlines)
        return dst

    # -- softmax and the negative log-likelihood ------------------------------------------------
    def _softmax(self, x, dim, log=False):
        """softmax (``log``: log_softmax) along ``dim``; a C-contiguous output of x's dtype."""
        x = self.contiguous(x)
        y = self.empty(x.shape, x.dtype)
        length, lines, inner = _line(x.shape, dim)
        if y.size:
            cuda_nn.softmax_kernel[lines, hand.THREADS](x.buf, x.offset, y.buf, length, inner, log)
        return y

    def _softmax_backward(self, g, y, dim, log=False):
        _check_saved("softmax backward", g, y)
        g, y = self.contiguous(g), self.contiguous(y)
        gx = self.empty(y.shape, y.dtype)
        length, lines, inner = _line(y.shape, dim)
        if gx.size:
            y0 = y if y.offset == 0 else self.copy(y)
            cuda_nn.softmax_backward_kernel[lines, hand.THREADS](g.buf, g.offset, y0.buf, gx.buf, length, inner, log)
        return gx

    def _nll_operands(self, shape, target, weight, dtype):
        """The flat int64 target and the weights (``None``: all ones), with the CPU's errors
        for sizes that do not fit (``ops/loss.py``'s ``_operands``)."""
        c = shape[0] if len(shape) == 1 else shape[1]
        positions = 1 if len(shape) == 1 else shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1)
        if target.size != positions:
            if len(shape) == 4:
                raise RuntimeError(f"size mismatch (got input: {list(shape)} , target: {list(target.shape)}")
            raise RuntimeError(f"size mismatch (got input: {list(shape)}, target: {list(target.shape)})")
        if weight is not None and weight.size != c:
            raise RuntimeError("weight tensor should be defined either for all or no classes")
        flat = self.contiguous(self.astype(target, np.dtype(np.int64)))
        w = self.contiguous(self.astype(weight, dtype)) if weight is not None else self._constant(1, dtype)
        return flat, w

    def _bad(self, bad, flat_target):
        first = int(bad.copy_to_host()[0])          # the one host read of a launch that checks
        if first < flat_target.size:
            raise IndexError(f"Target {self.item(self.slice(flat_target, (first,)))} is out of bounds.")

    def _nll_forward(self, x, target, weight, ignore_index):
        """Per-position losses shaped as ``target``, their sum and the sum of their weights (0-d
        device arrays of x's dtype, summed in float64 as the CPU's host numbers: nothing read back)."""
        flat, w = self._nll_operands(x.shape, target, weight, x.dtype)
        x4 = _as_4d(self, x)
        out = self.empty(target.shape, x.dtype)
        wout = self.empty(target.shape, x.dtype)
        n = flat.size
        if n:
            bad = cuda.to_device(np.array([n], np.int64))
            blocks, threads = _grid(n)
            cuda_nn.nll_forward_kernel[-(-n // threads), threads](
                x4.buf, x4.offset, tuple(x4.element_strides()), x4.shape, _flat_buf(flat), _flat_buf(w),
                weight is not None, out.buf, wout.buf, bad, ignore_index)
            self._bad(bad, flat)
        if not n:
            return out, self.zeros((), x.dtype), self.zeros((), x.dtype)
        total, weights = (self.astype(self.reshape(self._sum(a, tuple(range(a.ndim)), np.float64), ()), x.dtype)
                          for a in (out, wout))
        return out, total, weights

    def _nll_backward(self, shape, dtype, target, weight, grad, ignore_index):
        out = self.zeros(shape, dtype)
        if out.size == 0:
            return out
        flat, w = self._nll_operands(shape, target, weight, dtype)
        g = self.contiguous(self.astype(grad, dtype))
        if g.size not in (1, flat.size):
            raise RuntimeError(f"Expected a gradient of 1 or {flat.size} elements, but got {g.size}")
        shape4 = _as_4d(self, out).shape
        n = flat.size
        bad = cuda.to_device(np.array([n], np.int64))
        blocks, threads = _grid(n)
        cuda_nn.nll_backward_kernel[-(-n // threads), threads](
            out.buf, shape4, _flat_buf(flat), _flat_buf(w), weight is not None, _flat_buf(g), g.size != 1, bad,
            ignore_index)
        self._bad(bad, flat)
        return out


def _plan(x, dims):
    """(kept shape, kept element strides, reduced shape, reduced strides, reduced count) of
    ``x`` over ``dims``: tuples, never empty (a kernel indexes them)."""
    st = [s // x.itemsize for s in x.strides]
    kept = [d for d in range(x.ndim) if d not in dims]
    nred = 1
    for d in dims:
        nred *= x.shape[d]
    return (tuple(x.shape[d] for d in kept) or (1,), tuple(st[d] for d in kept) or (0,),
            tuple(x.shape[d] for d in dims) or (1,), tuple(st[d] for d in dims) or (0,), nred)


def _flat_buf(arr):
    """A contiguous array's elements as a 1-D device array (a view from its offset)."""
    return arr.buf[arr.offset:arr.offset + max(arr.size, 1)]


def _as_4d(target, x):
    if x.ndim == 1:
        return target.slice(x, (None, slice(None), None, None))
    if x.ndim == 2:
        return target.slice(x, (slice(None), slice(None), None, None))
    return x


def _line(shape, dim):
    """(line length, number of lines, inner stride) of softmax along ``dim``."""
    length = shape[dim] if shape else 1
    inner = 1
    for n in shape[dim + 1:]:
        inner *= n
    size = 1
    for n in shape:
        size *= n
    return length, (size // length if length else 0), inner
