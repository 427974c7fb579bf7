"""Elementwise ops: each is one scalar expression; its CPU loops are generated around it.

An op is written once, as a scalar function of its operands (``"a * b"``,
``"g * (1 - y * y)"``). From it we generate, into one cached module per op:

* contiguous loops, one per pattern of operands that are full arrays (``c``) or single
  values (``s``): ``x * 7`` runs a loop that reads ``7`` once; an in-place update reads its
  first operand from the output (``i``), so that its loop vectorizes too;
* row loops, made when first asked for, for the broadcasts of ordinary code: ``out`` seen
  as rows of ``k`` elements, each operand full (``c``), one row repeated (``r``: a bias
  ``x @ W + b``), one value per row (``o``: ``z - z.max(1, keepdim=True)``) or one value
  (``s``); the inner loop is contiguous, so it vectorizes as the flat loops do;
* a strided loop for everything else (transposes, slices, in-place writes into views,
  broadcasts in the middle): shape and per-operand strides, coalesced so the inner loop is
  long;

each in a serial and a ``prange`` version; small arrays take the serial one because
starting threads costs more than the work. The same scalar function is the body of the
CUDA kernels when that target is built.

Callers (the CPU target, ``targets/cpu.py``, for the Tensor layer) have already broadcast
shapes, promoted dtypes and allocated ``out``; here we only choose a loop and run it.
"""
import threading

import numpy as np

from ._cache import load_module
from .table import ACCUMULATIONS, TABLE, names_in

# Below this many elements the serial loop wins or ties (benchmarks/threshold.py), and a
# parallel loop right after a BLAS call competes with its still-spinning threads.
PARALLEL_MIN = 1 << 18

# Numba's default 'workqueue' threading layer aborts the process when two Python threads
# run parallel kernels at once, so parallel launches take turns.
parallel_lock = threading.Lock()

_HEADER = '''\
import math
import numpy as np
from numba import njit, prange

'''

_JIT = "@njit(cache=True, nogil=True, error_model='numpy'{extra})\n"


def _generate(name, args, expr, helpers):
    n = len(args)
    out = [_HEADER, helpers, "\n"]
    out.append("@njit(inline='always', error_model='numpy')\n")
    out.append(f"def f({', '.join(args)}):\n    return {expr}\n\n")
    # an in-place update reads its first operand from ``out`` itself (``i``): LLVM does not
    # vectorize a loop whose output overlaps an input passed as a second array
    patterns = ["".join("s" if mask >> k & 1 else "c" for k in range(n)) for mask in range(1 << n)]
    patterns += ["i" + p[1:] for p in patterns if p[0] == "c"]
    for pattern in patterns:
        params = ", ".join(f"x{k}" for k in range(n) if pattern[k] != "i")
        loads = "".join(f"    v{k} = x{k}[0]\n" for k in range(n) if pattern[k] == "s")
        reads = ", ".join({"s": f"v{k}", "c": f"x{k}[i]", "i": "out[i]"}[m] for k, m in enumerate(pattern))
        for prefix, loop, extra in (("s", "range", ""), ("p", "prange", ", parallel=True")):
            out.append(_JIT.format(extra=extra))
            out.append(f"def {prefix}_{pattern}(out, {params}):\n{loads}"
                       f"    for i in {loop}(out.shape[0]):\n        out[i] = f({reads})\n\n")
    params = ", ".join(f"x{k}" for k in range(n))
    sparams = ", ".join(f"x{k}, t{k}" for k in range(n))
    offs = "".join(f"        o{k} = 0\n" for k in range(n))
    steps = "".join(f"            o{k} += q * t{k}[d]\n" for k in range(n))
    incs = "".join(f"        i{k} = t{k}[nd - 1]\n" for k in range(n))
    sreads = ", ".join(f"x{k}[o{k} + j * i{k}]" for k in range(n))
    for prefix, loop, extra in (("s", "range", ""), ("p", "prange", ", parallel=True")):
        out.append(_JIT.format(extra=extra))
        out.append(
            f"def {prefix}_strided(shape, out, to, {sparams}):\n"
            "    nd = shape.shape[0]\n"
            "    inner = shape[nd - 1]\n"
            "    rows = 1\n"
            "    for d in range(nd - 1):\n"
            "        rows *= shape[d]\n"
            f"    for r in {loop}(rows):\n"
            "        rem = r + 0\n"            # a new variable: parfors refuse writes to the loop index
            "        oo = 0\n"
            f"{offs}"
            "        for d in range(nd - 2, -1, -1):\n"
            "            q = rem % shape[d]\n"
            "            rem //= shape[d]\n"
            "            oo += q * to[d]\n"
            f"{steps}"
            "        io = to[nd - 1]\n"
            f"{incs}"
            "        for j in range(inner):\n"
            f"            out[oo + j * io] = f({sreads})\n\n")
    return "".join(out)


def _generate_rows(args, expr, helpers, pattern):
    """The serial and parallel row loops of one pattern (see the module docstring)."""
    n = len(args)
    params = ", ".join(f"x{k}" for k in range(n))
    out = [_HEADER, helpers, "\n", "@njit(inline='always', error_model='numpy')\n",
           f"def f({', '.join(args)}):\n    return {expr}\n\n"]
    index = {"c": "b + j", "r": "j", "o": "r", "s": "0"}
    reads = ", ".join(f"x{k}[{index[m]}]" for k, m in enumerate(pattern))
    for prefix, loop, extra in (("s", "range", ""), ("p", "prange", ", parallel=True")):
        out.append(_JIT.format(extra=extra))
        out.append(f"def {prefix}_rows(out, k, {params}):\n"
                   f"    for r in {loop}(out.shape[0] // k):\n"
                   "        b = r * k\n"
                   "        for j in range(k):\n"
                   f"            out[b + j] = f({reads})\n\n")
    return "".join(out)


def _rows(out, xs):
    """``(k, pattern, flat operands)`` when C-contiguous ``out`` splits into rows of ``k``
    that each operand reads in one of the row loops' ways; None otherwise."""
    shape = out.shape
    nd = len(shape)
    for split in range(nd - 1, 0, -1):
        k = 1
        for n in shape[split:]:
            k *= n
        pattern = ""
        for x in xs:
            if x.size == 1:
                pattern += "s"
                continue
            if not x.flags.c_contiguous:
                return None
            xs_shape = (1,) * (nd - x.ndim) + x.shape
            if xs_shape == shape:
                pattern += "c"
            elif xs_shape[split:] == shape[split:] and all(n == 1 for n in xs_shape[:split]):
                pattern += "r"
            elif xs_shape[:split] == shape[:split] and all(n == 1 for n in xs_shape[split:]):
                pattern += "o"
            else:
                break
        else:
            if "r" in pattern or "o" in pattern:
                return k, pattern, [x.reshape(-1) for x in xs]
    return None


class Elementwise:
    """One elementwise op: a scalar expression over named operands."""

    def __init__(self, name, args, expr, helpers=""):
        self.name, self.args, self.expr, self.helpers = name, tuple(args), expr, helpers
        self._module = None
        self._kernels = {}
        self._row_kernels = {}

    def rows(self, pattern, parallel):
        """The row loop of ``pattern`` (its module generated and loaded when first asked for)."""
        key = (pattern, parallel)
        k = self._row_kernels.get(key)
        if k is None:
            helpers = self.helpers() if callable(self.helpers) else self.helpers
            module = load_module(f"{self.name}_rows_{pattern}", _generate_rows(self.args, self.expr, helpers, pattern))
            self._row_kernels[(pattern, False)], self._row_kernels[(pattern, True)] = module.s_rows, module.p_rows
            k = self._row_kernels[key]
        return k

    def __repr__(self):
        return f"Elementwise({self.name}: {', '.join(self.args)} -> {self.expr})"

    @property
    def module(self):
        if self._module is None:
            helpers = self.helpers() if callable(self.helpers) else self.helpers
            self._module = load_module(self.name, _generate(self.name, self.args, self.expr, helpers))
        return self._module

    def kernel(self, layout, parallel):
        """The compiled loop for ``layout`` (an operand pattern like ``"cs"``, or ``"strided"``)."""
        key = (layout, parallel)
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = getattr(self.module, ("p_" if parallel else "s_") + layout)
        return k

    def __call__(self, out, *xs, fresh_out=False):
        """Compute into ``out`` (any strides); each of ``xs`` broadcasts to ``out.shape``.
        ``fresh_out`` says ``out`` was just allocated, so no input can overlap it."""
        size = out.size
        if size == 0:
            return out
        if not fresh_out:
            xs = [_no_partial_overlap(out, x) for x in xs]
        if out.flags.c_contiguous:
            pattern, flat = _contiguous_operands(xs, size)
            if pattern is not None:
                if xs[0] is out:              # an in-place update
                    pattern, flat = "i" + pattern[1:], flat[1:]
                return self.contiguous(out, pattern, flat)
            rows = _rows(out, xs)
            if rows is not None:
                k, pattern, flat = rows
                parallel = size >= PARALLEL_MIN and size // k > 1
                _launch(self.rows(pattern, parallel), parallel, out.reshape(-1), k, *flat)
                return out
        parallel = size >= PARALLEL_MIN
        shape, strided = _coalesce(out, xs)
        _launch(self.kernel("strided", parallel), parallel, shape, *strided)
        return out

    def contiguous(self, out, pattern, flat):
        """Compute into C-contiguous ``out`` from 1-D operands, full (``c``) or one value
        (``s``) as ``pattern`` says. The quick path for callers that know their layout."""
        if out.size < PARALLEL_MIN:
            (self._kernels.get((pattern, False)) or self.kernel(pattern, False))(out.ravel(), *flat)
        else:
            _launch(self.kernel(pattern, True), True, out.ravel(), *flat)
        return out


def _launch(kernel, parallel, *args):
    if parallel:
        with parallel_lock:
            kernel(*args)
    else:
        kernel(*args)


def _contiguous_operands(xs, size):
    """The operands as flat arrays for a contiguous loop, and their pattern; ``None`` if
    some operand needs the strided loop. One value broadcast to any shape (as the
    gradient of a sum is) counts as a single value."""
    pattern = ""
    flat = []
    for x in xs:
        if x.flags.c_contiguous and x.size == size:
            pattern += "c"
            flat.append(x.ravel())        # a view (C-contiguous), and quicker than reshape(-1)
        elif x.size == 1:
            pattern += "s"
            flat.append(x.reshape(-1))
        elif not any(x.strides):
            pattern += "s"
            flat.append(x[(0,) * x.ndim].reshape(1))   # a writable copy: one kernel variant
        else:
            return None, None
    return pattern, flat


def _no_partial_overlap(out, x):
    """An input that overlaps ``out`` other than element for element is read from a copy."""
    if x is out:
        return x
    if x.ndim and np.may_share_memory(out, x):
        if not (x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
                and x.shape == out.shape and x.strides == out.strides):
            return copy_of(x)
    return x


def element_strides(arr, shape):
    """Strides of ``arr`` broadcast to ``shape``, in elements (0 where broadcast). An array
    that does not broadcast to ``shape`` is refused here, before a loop could read past it."""
    pad = len(shape) - arr.ndim
    if pad < 0 or any(n != 1 and n != shape[d + pad] for d, n in enumerate(arr.shape)):
        raise ValueError(f"an operand of shape {arr.shape} does not broadcast to {tuple(shape)}")
    item = arr.itemsize
    return [0 if d < pad or arr.shape[d - pad] == 1 else arr.strides[d - pad] // item
            for d in range(len(shape))]


def strided_view(arr, shape, strides, writeable=True):
    """A view of ``arr``'s memory with ``shape`` and byte ``strides`` (0 where broadcast).
    NumPy's ``broadcast_to`` and ``as_strided`` go through Python-level machinery (3-30 us,
    the first backward step of every graph pays it); the ndarray constructor over a
    C-contiguous buffer is one call."""
    if not arr.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(arr, shape, strides, writeable=writeable)
    view = np.ndarray(shape, arr.dtype, arr, 0, strides)
    if not writeable and view.flags.writeable:
        view.flags.writeable = False
    return view


def flat_buffer(arr):
    """A 1-D view of ``arr``'s memory from its first element to its last."""
    if arr.size == 0:
        return arr.reshape(-1)
    if arr.flags.c_contiguous:
        return arr.reshape(-1)
    if any(s < 0 for s in arr.strides):
        raise ValueError("negative strides are not supported")
    extent = 1 + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) // arr.itemsize
    return np.lib.stride_tricks.as_strided(arr, (extent,), (arr.itemsize,))


def _coalesce(out, xs):
    """Shape and (buffer, strides) pairs with size-1 dims dropped and mergeable dims merged."""
    shape = out.shape
    all_strides = [element_strides(out, shape)] + [element_strides(x, shape) for x in xs]
    dims = [d for d in range(len(shape)) if shape[d] != 1] or [len(shape) - 1 if shape else None]
    merged_shape, merged = [], [[] for _ in all_strides]
    for d in dims:
        n = shape[d] if d is not None else 1
        st = [s[d] if d is not None else 0 for s in all_strides]
        if merged_shape and all(m[-1] == n * s for m, s in zip(merged, st)):
            merged_shape[-1] *= n
            for m, s in zip(merged, st):
                m[-1] = s
        else:
            merged_shape.append(n)
            for m, s in zip(merged, st):
                m.append(s)
    args = [np.array(merged_shape, dtype=np.int64)]
    for arr, st in zip([out] + list(xs), merged):
        args += [flat_buffer(arr), np.array(st, dtype=np.int64)]
    return args[0], args[1:]


# ---------------------------------------------------------------------------------------
# Kernels of the op table (table.py): each elementwise op's forward, and a fused kernel per
# gradient, of elementwise ops and of accumulations.

def _helpers(expr, skip):
    """The line importing the scalar functions ``expr`` calls; built with the kernels, so
    that importing nbgrad imports no Numba."""
    def helpers():
        from . import scalar
        used = sorted(n for n in names_in(expr) - set(skip) if n in scalar.__all__)
        return scalar.import_line(*used) if used else ""
    return helpers


OPS = {}
for _record in (*TABLE.values(), *ACCUMULATIONS.values()):
    if _record.name in TABLE:
        OPS[_record.name] = Elementwise(_record.name, _record.operands, _record.forward,
                                        _helpers(_record.forward, _record.operands))
    for _arg, _expr in _record.grads.items():
        if _expr not in ("0", "g"):
            _operands = _record.grad_operands(_arg)
            OPS[_record.grad_kernel(_arg)] = Elementwise(_record.grad_kernel(_arg), _operands, _expr,
                                                         _helpers(_expr, _operands))


def copy_of(x):
    """A C-contiguous copy of ``x``."""
    out = np.empty(x.shape, x.dtype)
    OPS["copy"](out, x, fresh_out=True)
    return out


def apply(name, out, *xs):
    return OPS[name](out, *xs)
