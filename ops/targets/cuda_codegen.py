"""CUDA kernels generated from the op table, as ``ops/elementwise.py`` generates the CPU loops.

Each op-table expression (a forward, or one operand's fused gradient) becomes one module:

* ``f``, a device function whose body is the table expression; it calls ``scalar.py``'s
  functions, which are Numba ``njit`` functions: numba's CUDA target compiles a CPU
  dispatcher called from a kernel as a device function (and the simulator simply calls it);
* ``c_<pattern>``: grid-stride kernels over C-contiguous operands, each full (``c``, read at
  ``i``) or one element (``s``, read once), as the CPU's contiguous loops;
* ``strided``: one thread per output element, which it unravels over the shape and the
  per-operand element strides (tuples, passed by value: nothing is copied per launch).

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


def _source(args, expr, helpers):
    n = len(args)
    out = [_HEADER, helpers, "\n"]
    out.append("@cuda.jit(device=True)\n")
    out.append(f"def f({', '.join(args)}):\n    return {expr}\n\n")
    params = ", ".join(f"x{k}, o{k}" for k in range(n))
    for mask in range(1 << n):
        pattern = "".join("s" if mask >> k & 1 else "c" for k in range(n))
        loads = "".join(f"    v{k} = x{k}[o{k}]\n" for k in range(n) if pattern[k] == "s")
        reads = ", ".join(f"v{k}" if pattern[k] == "s" else f"x{k}[o{k} + i]" for k in range(n))
        out.append("@cuda.jit\n")
        out.append(f"def c_{pattern}(size, out, oo, {params}):\n{loads}"
                   "    i = cuda.grid(1)\n"
                   "    step = cuda.gridsize(1)\n"
                   "    while i < size:\n"
                   f"        out[oo + i] = f({reads})\n"
                   "        i += step\n\n")
    sparams = ", ".join(f"x{k}, o{k}, t{k}" for k in range(n))
    offs = "".join(f"    p{k} = o{k}\n" for k in range(n))
    steps = "".join(f"        p{k} += q * t{k}[d]\n" for k in range(n))
    sreads = ", ".join(f"x{k}[p{k}]" for k in range(n))
    out.append("@cuda.jit\n")
    out.append(f"def strided(size, shape, out, oo, to, {sparams}):\n"
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
               f"    out[po] = f({sreads})\n")
    return "".join(out)


def _helpers(expr, skip):
    from .. import scalar
    used = sorted(n for n in names_in(expr) - set(skip) if n in scalar.__all__)
    return scalar.import_line(*used) if used else ""


class CudaElementwise:
    """One table expression's CUDA kernels (compiled lazily, per signature, by numba)."""

    def __init__(self, name, args, expr):
        self.name, self.args, self.expr = name, tuple(args), expr
        self._module = None

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
        """``"strided"`` or an operand pattern like ``"cs"``."""
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
