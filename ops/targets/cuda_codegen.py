"""CUDA kernels generated from the op table, as ``ops/elementwise.py`` generates the CPU loops.

Each op-table expression (a forward, or one operand's fused gradient) becomes one module:

* ``f``, a device function whose body is the table expression; it calls ``scalar.py``'s
  functions, which are Numba ``njit`` functions: numba's CUDA target compiles a CPU
  dispatcher called from a kernel as a device function (and the simulator simply calls it);
* ``c_<pattern>``: grid-stride kernels over C-contiguous operands, each full (``c``, read at
  ``i``), one element (``s``, read once) or a number (``v``, passed by value, as a NumPy
  scalar of the computation's dtype), as the CPU's contiguous loops;
* ``strided``: one thread per output element, which it unravels over the shape and the
  per-operand element strides (tuples, passed by value: nothing is copied per launch);
  ``strided_<pattern>`` where some operands (``v``) are numbers.

Patterns with numbers are generated on first use, a module each (an op of five operands
would otherwise carry 3**5 kernels).

Every array argument is a flat device buffer plus an element offset. Sources go through
``load_module`` (a real file in the kernel cache), like the CPU's.
"""
from numba import config

from .._cache import load_module
from ..table import ACCUMULATIONS, TABLE, names_in

if not config.ENABLE_CUDASIM:
    from . import cuda_scalar  # noqa: F401  (CUDA lowerings of scalar.py's NumPy-ufunc functions)

__all__ = ["CudaElementwise", "KERNELS", "accumulation"]

_HEADER = '''\
import math
from numba import cuda

'''


def _contiguous(pattern):
    """Grid-stride kernel ``c_<pattern>``: per operand ``c`` (a full contiguous buffer, read at
    ``i``), ``s`` (a one-element buffer, read once) or ``v`` (a number, passed by value)."""
    params = ", ".join(f"x{k}" if c == "v" else f"x{k}, o{k}" for k, c in enumerate(pattern))
    loads = "".join(f"    v{k} = x{k}[o{k}]\n" for k, c in enumerate(pattern) if c == "s")
    reads = ", ".join({"c": f"x{k}[o{k} + i]", "s": f"v{k}", "v": f"x{k}"}[c] for k, c in enumerate(pattern))
    return ("@cuda.jit\n"
            f"def c_{pattern}(size, out, oo, {params}):\n{loads}"
            "    i = cuda.grid(1)\n"
            "    step = cuda.gridsize(1)\n"
            "    while i < size:\n"
            f"        out[oo + i] = f({reads})\n"
            "        i += step\n\n")


def _strided(pattern):
    """One thread per element, ``strided`` (every operand an array: ``a``) or ``strided_<pattern>``
    (``v``: a number, passed by value)."""
    name = "strided" if "v" not in pattern else "strided_" + pattern
    arrays = [k for k, c in enumerate(pattern) if c == "a"]
    params = ", ".join(f"x{k}" if c == "v" else f"x{k}, o{k}, t{k}" for k, c in enumerate(pattern))
    offs = "".join(f"    p{k} = o{k}\n" for k in arrays)
    steps = "".join(f"        p{k} += q * t{k}[d]\n" for k in arrays)
    reads = ", ".join(f"x{k}" if c == "v" else f"x{k}[p{k}]" for k, c in enumerate(pattern))
    return ("@cuda.jit\n"
            f"def {name}(size, shape, out, oo, to, {params}):\n"
            "    i = cuda.grid(1)\n"
            "    if i >= size:\n"
            "        return\n"
            "    rem = i\n"
            "    po = oo\n"
            f"{offs}"
            "    for d in range(len(shape) - 1, -1, -1):\n"
            "        q = rem % shape[d]\n"
            "        rem //= shape[d]\n"
            "        po += q * to[d]\n"
            f"{steps}"
            f"    out[po] = f({reads})\n\n")


def _source(args, expr, helpers, layouts=None):
    """The device function ``f`` and the kernels of ``layouts`` (default: every contiguous
    pattern of arrays, and the all-array strided kernel)."""
    n = len(args)
    if layouts is None:
        layouts = ["".join("s" if mask >> k & 1 else "c" for k in range(n)) for mask in range(1 << n)]
        layouts.append("strided")
    out = [_HEADER, helpers, "\n"]
    out.append("@cuda.jit(device=True)\n")
    out.append(f"def f({', '.join(args)}):\n    return {expr}\n\n")
    for layout in layouts:
        if layout == "strided":
            out.append(_strided("a" * n))
        elif layout.startswith("strided_"):
            out.append(_strided(layout[len("strided_"):]))
        else:
            out.append(_contiguous(layout))
    return "".join(out).rstrip("\n") + "\n"


def _helpers(expr, skip):
    from .. import scalar
    used = sorted(n for n in names_in(expr) - set(skip) if n in scalar.__all__)
    return scalar.import_line(*used) if used else ""


class CudaElementwise:
    """One table expression's CUDA kernels (compiled lazily, per signature, by numba)."""

    def __init__(self, name, args, expr):
        self.name, self.args, self.expr = name, tuple(args), expr
        self._module = None
        self._by_value = {}

    def __repr__(self):
        return f"CudaElementwise({self.name}: {', '.join(self.args)} -> {self.expr})"

    @property
    def source(self):
        return _source(self.args, self.expr, _helpers(self.expr, self.args))

    @property
    def module(self):
        if self._module is None:
            self._module = load_module("cuda_" + self.name, self.source)
        return self._module

    def kernel(self, layout):
        """``"strided"`` or an operand pattern like ``"cs"``; with numbers passed by value,
        ``"cv"`` or ``"strided_av"`` (generated on first use, one module each)."""
        if "v" in layout:
            k = self._by_value.get(layout)
            if k is None:
                source = _source(self.args, self.expr, _helpers(self.expr, self.args), [layout])
                module = load_module(f"cuda_{self.name}_{layout}", source)
                k = self._by_value[layout] = getattr(module, layout if layout.startswith("strided") else "c_" + layout)
            return k
        return getattr(self.module, "strided" if layout == "strided" else "c_" + layout)


def _build():
    kernels = {}
    for record in (*TABLE.values(), *ACCUMULATIONS.values()):
        if record.name in TABLE:
            kernels[record.name] = CudaElementwise(record.name, record.operands, record.forward)
        for arg, expr in record.grads.items():
            if expr not in ("0", "g"):
                name = record.grad_kernel(arg)
                kernels[name] = CudaElementwise(name, record.grad_operands(arg), expr)
    return kernels


KERNELS = _build()       # the same names as ``elementwise.OPS``


# -- accumulations (sum, prod, var, std, logsumexp, count_zeros): the table's kernel text ------------------
_ACC = '''\
import math
from numba import cuda, float64, int64

INF = math.inf
THREADS = {threads}


def _make(acc_type):
    @cuda.jit
    def first(x, xo, kshape, kstr, rshape, rstr, nred, parts, out, oo, scale, center, partials):
        """Block ``b`` accumulates part ``b % parts`` of output ``b // parts``: threads stride
        over the reduced elements, then a tree in shared memory; one part: finished here."""
        b = cuda.blockIdx.x
        t = cuda.threadIdx.x
        j = b // parts
        part = b - j * parts
        zero = acc_type({zero})
        cs = center
        c = {center}
        base = xo
        rem = j
        for d in range(len(kshape) - 1, -1, -1):
            q = rem % kshape[d]
            rem //= kshape[d]
            base += q * kstr[d]
        acc = acc_type({zero})
        r = part * THREADS + t
        while r < nred:
            p = base
            rem = r
            for d in range(len(rshape) - 1, -1, -1):
                q = rem % rshape[d]
                rem //= rshape[d]
                p += q * rstr[d]
            v = x[p]
            acc {op}= {term}
            r += parts * THREADS
        sh = cuda.shared.array(THREADS, acc_type)
        sh[t] = acc
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                sh[t] {op}= sh[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            if parts == 1:
                acc = sh[0]
                out[oo + j] = {finish}
            else:
                partials[b] = sh[0]

    @cuda.jit
    def combine(partials, parts, out, oo, scale, center):
        j = cuda.blockIdx.x
        t = cuda.threadIdx.x
        zero = acc_type({zero})
        cs = center
        c = {center}
        acc = acc_type({zero})
        k = t
        while k < parts:
            acc {op}= partials[j * parts + k]
            k += THREADS
        sh = cuda.shared.array(THREADS, acc_type)
        sh[t] = acc
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if t < s:
                sh[t] {op}= sh[t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            acc = sh[0]
            out[oo + j] = {finish}
    return first, combine


float_first, float_combine = _make(float64)
int_first, int_combine = _make(int64)
'''


def accumulation(name, threads):
    """The CUDA kernels of accumulation ``name`` (``ACCUMULATIONS``): the same ``op``, ``term``,
    ``center`` and ``finish`` text the CPU loops paste in (``cs[j]``: the output's center)."""
    rec = ACCUMULATIONS[name]
    source = _ACC.format(threads=threads, op=rec.op, term=rec.term, center=rec.center, finish=rec.finish,
                         zero="1" if rec.op == "*" else "0")
    return load_module(f"cuda_acc_{name}", source)
