"""Reductions, softmax and their backward steps, on raw arrays.

Every kernel here sees its input as a block of shape ``(outer, red, inner)`` with the
reduced dims in the middle: ``inner == 1`` reduces rows (one long run per output),
``inner > 1`` accumulates whole rows of ``inner`` outputs at once (an inner loop that
vectorizes). ``_plan`` finds that block, contiguous, without copying whenever the input's
memory allows it, transposed views included (it walks the dims in memory order). Where it
does not (broadcast, sliced or permuted views), the reductions read the input in place
through its strides (``_layout``: a ``ones(1).expand(2**31)`` is summed without allocating
it); the kernels whose output is as large as their input (softmax, the backward steps of
amax and prod) copy it with the reduced dims moved last.

Sums keep float64 (or int64) accumulators, so float32 sums of millions of elements stay
accurate; their kernels may reassociate the additions (fastmath's 'reassoc' flag alone: NaN
and infinity keep their meaning), so LLVM spreads them over vector lanes. Parallel launches split a long reduction into chunks whose partial
results are combined afterwards, so that a whole-tensor sum uses every thread too.

The kernels are generated from templates (one accumulation loop serves sum, product,
squared deviation and exp-sum) into a cached module, loaded the first time one is used:
importing nbgrad compiles nothing and does not even import Numba. Softmax takes its exp,
maximum and row sums from ``vmath``, written so that its loops vectorize.
"""
import math
import textwrap

import numpy as np

from ._cache import load_module
from .elementwise import PARALLEL_MIN, copy_of, flat_buffer, parallel_lock
from .table import ACCUMULATIONS

__all__ = ["sum", "prod", "var", "count_zeros", "logsumexp", "max", "softmax", "softmax_backward", "index_backward",
           "distribute_backward", "prod_backward", "check_saved", "keep_shape"]

# -- kernel source ---------------------------------------------------------------------------------
# A kernel runs one task body per (slab o, reduced chunk rc, column block ic): the rows
# [lo, hi) of slab o, columns [jlo, jlo + n). Bodies are pasted into the kernels' loops as
# text, not called: a call to another Numba function costs ~40 ns, more than a short row.
# Loops index slices (views) with indices from range(): Numba then knows they are not
# negative and drops its wraparound checks, which otherwise cost 2-3x.

_HEADER = """\
import math
import numpy as np
from numba import njit, prange
{vmath}
INF = math.inf


@njit(inline='always', error_model='numpy')
def offset(i, shape, strides):
    # the offset of C-order index i over dims of shape and element strides
    b = 0
    for d in range(shape.shape[0] - 1, -1, -1):
        n = shape[d]
        b += (i % n) * strides[d]
        i //= n
    return b
"""

# How a task body finds x's elements. A block: slab o is rows o * red + r of inner elements
# each. Strided (any other layout, read in place): slab o starts at offset xo from the kept
# dims (shapes ks, element strides kx), reduced element r at offset(r) from the reduced dims
# (rs, rx), read in runs along the last of them (stride s); the inner columns are sx apart.
_LAYOUTS = {
    "": dict(args="x", slab="", at="o * red + r", run="hi - r", distinct="m", row="(o * red + r) * inner + jlo",
             s="", sx=""),
    # the extreme of a run along a broadcast dim (s == 0) is its first element
    "_strided": dict(args="x, ks, kx, rs, rx, sx", slab="xo = offset(o, ks, kx)\ns = rx[-1]\n",
                     at="xo + offset(r, rs, rx)", run="min(rs[-1] - r % rs[-1], hi - r)",
                     distinct="m if s else 1", row="xo + offset(r, rs, rx) + jlo * sx", s=" * s", sx=" * sx"),
}

# out[k] = finish(acc), acc = zero (op) term(v, c) over the reduced rows of output k, where
# c = center is a per-output value from cs[j] (the mean for var, the max for logsumexp).
_ACCUMULATE = """\
lo = rc * rb
hi = min(red, lo + rb)
jlo = ic * ib
n = min(inner, jlo + ib) - jlo
k = o * inner + jlo
cs = center[k:k + n]
{slab}if inner == 1:
    # runs along the reduced range (a block is one run); the kernel may reassociate the
    # accumulation (fastmath 'reassoc'), so LLVM splits it over vector lanes
    j = 0
    c = {center}
    acc = zero
    r = lo
    while r < hi:
        xr = x[{at}:]
        m = {run}
        for i in range(m):
            v = xr[i{s}]
            acc {op}= {term}
        r += m
    if nrc == 1:
        out[k] = {finish}
    else:
        part[o * nrc + rc] = acc
else:
    # whole rows of n outputs at a time: the inner loop vectorizes
    accs = np.empty(n, part.dtype)
    for j in range(n):
        accs[j] = zero
    for r in range(lo, hi):
        xr = x[{row}:]
        for j in range(n):
            v = xr[j{sx}]
            c = {center}
            accs[j] {op}= {term}
    if nrc == 1:
        outs = out[k:k + n]
        for j in range(n):
            acc = accs[j]
            c = {center}
            outs[j] = {finish}
    else:
        p = (o * nrc + rc) * inner + jlo
        for j in range(n):
            part[p + j] = accs[j]
"""

# Partial results of reduced chunks (there are few outputs then: a serial loop).
_ACCUMULATE_COMBINE = """
@njit(error_model='numpy')
def {name}_combine(center, out, part, outer, inner, nrc, zero, scale):
    for k in range(outer * inner):
        o = k // inner
        p = o * nrc * inner + k - o * inner
        acc = part[p]
        for rc in range(1, nrc):
            acc {op}= part[p + rc * inner]
        cs = center[k:k + 1]
        j = 0
        c = {center}
        out[k] = {finish}
"""

# The accumulations of the op table (table.py) that have loops of their own (mean shares sum's).
_ACCUMULATIONS = {rec.name: (rec.op, rec.term, rec.center, rec.finish)
                  for rec in ACCUMULATIONS.values() if rec.kernel is None}

# A C-contiguous array's total below PARALLEL_MIN elements, as a number: the loss of every small
# graph, without the block and grid machinery.
_TOTAL = """
@njit(cache=True, nogil=True, error_model='numpy', fastmath={{'reassoc'}})
def s_{name}_total(x, zero, scale):
    acc = zero
    for i in range(x.shape[0]):
        v = x[i]
        acc {op}= {term}
    return {finish}
"""

# The extreme value and its first index; NaN beats everything, as in PyTorch.
_BETTER = "((v {cmp} best) | ((v != v) & (best == best)))"

_EXTREME = """\
lo = rc * rb
hi = min(red, lo + rb)
jlo = ic * ib
n = min(inner, jlo + ib) - jlo
{slab}if inner == 1:
    r = lo
    best = x[{at}]
    at = lo
    while r < hi:
        xr = x[{at}:]
        m = {run}
        for i in range({distinct}):
            v = xr[i{s}]
            if {better}:
                best = v
                at = r + i
        r += m
    if nrc == 1:
        vals[o] = best
        idx[o] = at
    else:
        pvals[o * nrc + rc] = best
        pidx[o * nrc + rc] = at
else:
    r = lo
    xr = x[{row}:]
    bests = np.empty(n, x.dtype)
    ats = np.empty(n, np.int64)
    for j in range(n):
        bests[j] = xr[j{sx}]
        ats[j] = lo
    for r in range(lo + 1, hi):
        xr = x[{row}:]
        for j in range(n):
            v = xr[j{sx}]
            best = bests[j]
            if {better}:
                bests[j] = v
                ats[j] = r
    if nrc == 1:
        vs = vals[o * inner + jlo:o * inner + jlo + n]
        ix = idx[o * inner + jlo:o * inner + jlo + n]
    else:
        p = (o * nrc + rc) * inner + jlo
        vs = pvals[p:p + n]
        ix = pidx[p:p + n]
    for j in range(n):
        vs[j] = bests[j]
        ix[j] = ats[j]
"""

_EXTREME_COMBINE = """
@njit(error_model='numpy')
def {name}_combine(vals, idx, pvals, pidx, outer, inner, nrc):
    for k in range(outer * inner):
        o = k // inner
        p = o * nrc * inner + k - o * inner
        best = pvals[p]
        at = pidx[p]
        for rc in range(1, nrc):
            v = pvals[p + rc * inner]
            if {better}:
                best = v
                at = pidx[p + rc * inner]
        vals[k] = best
        idx[k] = at
"""

# Kernels over whole lines (all of the reduced range at once); a task is (slab o, column
# block ic), its line j the elements b0 + r * inner + j, r < red.
_LINE = """\
jlo = ic * ib
b0 = o * red * inner + jlo
k = o * inner + jlo
n = min(inner, jlo + ib) - jlo
"""

_SOFTMAX = _LINE + """\
if inner == 1:
    # a row: its maximum m, e = exp(x - m) staged in y, their sum s, then y. Each loop
    # vectorizes (ops/vmath.py): x - m, exp and the log step run in x's dtype (as in
    # PyTorch), s and 1 / s in float64.
    xr = x[b0:b0 + red]
    yr = y[b0:b0 + red]
    m = xr.dtype.type(-INF)
    for r in range(red):
        m = maximum(m, xr[r])
    for r in range(red):
        yr[r] = exp(xr[r] - m)
    s = vsum(yr)
    if log:
        ls = xr.dtype.type(math.log(s))
        for r in range(red):
            yr[r] = (xr[r] - m) - ls
    else:
        inv = 1.0 / s
        for r in range(red):
            yr[r] *= inv
else:
    ms = np.empty(n, x.dtype)
    ss = np.empty(n)
    for j in range(n):
        ms[j] = -INF
        ss[j] = 0.0
    for r in range(red):
        xr = x[b0 + r * inner:b0 + r * inner + n]
        for j in range(n):
            ms[j] = maximum(ms[j], xr[j])
    for r in range(red):
        xr = x[b0 + r * inner:b0 + r * inner + n]
        yr = y[b0 + r * inner:b0 + r * inner + n]
        for j in range(n):
            e = exp(xr[j] - ms[j])
            ss[j] += e
            if not log:
                yr[j] = e
    for j in range(n):
        ss[j] = math.log(ss[j]) if log else 1.0 / ss[j]
    for r in range(red):
        xr = x[b0 + r * inner:b0 + r * inner + n]
        yr = y[b0 + r * inner:b0 + r * inner + n]
        if log:
            for j in range(n):
                yr[j] = (np.float64(xr[j]) - ms[j]) - ss[j]
        else:
            for j in range(n):
                yr[j] *= ss[j]
"""

# softmax: y * (g - sum(g * y)); log_softmax: g - exp(y) * sum(g), along the line. Sums in
# float64; along a row, exp(y) * sum(g) - g in y's dtype, fused where the CPU has FMA.
_SOFTMAX_BACKWARD = _LINE + """\
if inner == 1:
    gr = g[b0:b0 + red]
    yr = y[b0:b0 + red]
    gxr = gx[b0:b0 + red]
    if log:
        s = -yr.dtype.type(vsum(gr))
        for r in range(red):
            gxr[r] = fma(exp(yr[r]), s, gr[r])
    else:
        s = vdot(gr, yr)
        for r in range(red):
            gxr[r] = yr[r] * (gr[r] - s)
else:
    ss = np.empty(n)
    for j in range(n):
        ss[j] = 0.0
    for r in range(red):
        gr = g[b0 + r * inner:b0 + r * inner + n]
        yr = y[b0 + r * inner:b0 + r * inner + n]
        for j in range(n):
            ss[j] += gr[j] if log else np.float64(gr[j]) * yr[j]
    for r in range(red):
        gr = g[b0 + r * inner:b0 + r * inner + n]
        yr = y[b0 + r * inner:b0 + r * inner + n]
        gxr = gx[b0 + r * inner:b0 + r * inner + n]
        if log:
            for j in range(n):
                gxr[j] = gr[j] - exp(yr[j]) * ss[j]
        else:
            for j in range(n):
                gxr[j] = yr[j] * (gr[j] - ss[j])
"""

# g shared evenly among the elements equal to the extreme m: mask * (g / count), as in
# PyTorch's amax/amin (a NaN or infinite share reaches the others as NaN); with nan_too, as
# its max()/min() (evenly_distribute_backward): the NaNs where m is NaN, and exact zeros
# for the others
_DISTRIBUTE = _LINE + """\
ms = m[k:k + n]
shares = np.empty(n)
for j in range(n):
    shares[j] = 0.0
for r in range(red):
    xr = x[b0 + r * inner:b0 + r * inner + n]
    for j in range(n):
        v = xr[j]
        c = ms[j]
        if v == c or (nan_too and v != v and c != c):
            shares[j] += 1.0
gs = g[k:k + n]
for j in range(n):
    shares[j] = gs[j] / shares[j]
for r in range(red):
    xr = x[b0 + r * inner:b0 + r * inner + n]
    gxr = gx[b0 + r * inner:b0 + r * inner + n]
    for j in range(n):
        v = xr[j]
        c = ms[j]
        hit = v == c or (nan_too and v != v and c != c)
        gxr[j] = shares[j] if hit else (0.0 if nan_too else shares[j] * 0.0)
"""

# g times the product of the other elements of the line: prefix times suffix products,
# exact where there are zeros
_PROD_BACKWARD = _LINE + """\
ps = np.empty(n)
for j in range(n):
    ps[j] = 1.0
for r in range(red):
    xr = x[b0 + r * inner:b0 + r * inner + n]
    gxr = gx[b0 + r * inner:b0 + r * inner + n]
    for j in range(n):
        gxr[j] = ps[j]
        ps[j] *= xr[j]
gs = g[k:k + n]
for j in range(n):
    ps[j] = gs[j]
for r in range(red - 1, -1, -1):
    xr = x[b0 + r * inner:b0 + r * inner + n]
    gxr = gx[b0 + r * inner:b0 + r * inner + n]
    for j in range(n):
        gxr[j] *= ps[j]
        ps[j] *= xr[j]
"""

_INDEX_BACKWARD = """
@njit(cache=True, nogil=True, error_model='numpy')
def index_backward(g, idx, gx, red, inner):
    # gx (zero-filled) gets g at the positions idx along the reduced range; returns the
    # number of the first index outside it (nothing is written there), or -1
    for k in range(g.shape[0]):
        i = idx[k]
        if i < 0 or i >= red:
            return k
        o = k // inner
        gx[(o * red + i) * inner + (k - o * inner)] = g[k]
    return -1
"""

# How kernels walk their tasks: serial ones loop, parallel ones spread the flat task number
# over threads. Per variant: decorator options, then for tasks (o, rc, ic) and for lines
# (o, ic) the loop head and the indentation of its body.
_VARIANTS = {
    "s": ("", ("for o in range(outer):\n    for rc in range(nrc):\n        for ic in range(nic):\n", 12),
          ("for o in range(outer):\n    for ic in range(nic):\n", 8)),
    "p": (", parallel=True",
          ("for t in prange(outer * nrc * nic):\n    o = t // (nrc * nic)\n    rc = t // nic - o * nrc\n"
           "    ic = t - (o * nrc + rc) * nic\n", 4),
          ("for t in prange(outer * nic):\n    o = t // nic\n    ic = t - o * nic\n", 4)),
}


def _kernel(prefix, name, args, body, chunks, setup="", after="", reassociate=False):
    extra, tasks, lines = _VARIANTS[prefix]
    loops, depth = tasks if chunks else lines
    if reassociate:                # an accumulation's order is free: its loop vectorizes
        extra += ", fastmath={'reassoc'}"
    return (f"\n@njit(cache=True, nogil=True, error_model='numpy'{extra})\ndef {prefix}_{name}({args}):\n"
            + textwrap.indent(setup + loops, "    ") + textwrap.indent(body, " " * (4 + depth))
            + textwrap.indent(after, "    "))


def _source():
    from . import vmath                        # imports Numba: only when kernels are built
    out = [_HEADER.format(vmath=vmath.import_line("exp", "fma", "maximum", "vsum", "vdot"))]
    for name, (op, term, center, finish) in _ACCUMULATIONS.items():
        parts = dict(name=name, op=op, term=term, center=center, finish=finish)
        out.append(_ACCUMULATE_COMBINE.format(**parts))
        out += [_kernel(prefix, name + suffix,
                        f"{layout['args']}, center, out, part, outer, red, inner, nrc, nic, rb, ib, zero, scale",
                        _ACCUMULATE.format(**parts, **layout), True,
                        after=f"if nrc > 1:\n    {name}_combine(center, out, part, outer, inner, nrc, zero, scale)\n",
                        reassociate=True)
                for suffix, layout in _LAYOUTS.items() for prefix in _VARIANTS]
        if center == "zero":                   # no center: a whole small array's total, one loop (a loss)
            out.append(_TOTAL.format(**parts))
    for name, cmp in (("max", ">"), ("min", "<")):
        better = _BETTER.format(cmp=cmp)
        out.append(_EXTREME_COMBINE.format(name=name, better=better))
        out += [_kernel(prefix, name + suffix, f"{layout['args']}, vals, idx, outer, red, inner, nrc, nic, rb, ib",
                        _EXTREME.format(better=better, **layout), True,
                        setup="size = outer * nrc * inner if nrc > 1 else 1\npvals = np.empty(size, x.dtype)\n"
                              "pidx = np.empty(size, np.int64)\n",
                        after=f"if nrc > 1:\n    {name}_combine(vals, idx, pvals, pidx, outer, inner, nrc)\n")
                for suffix, layout in _LAYOUTS.items() for prefix in _VARIANTS]
    for name, args, body in (("softmax", "x, y", _SOFTMAX), ("softmax_backward", "g, y, gx", _SOFTMAX_BACKWARD),
                             ("distribute", "x, m, g, gx", _DISTRIBUTE), ("prod_backward", "x, g, gx", _PROD_BACKWARD)):
        flag = {"softmax": ", log", "softmax_backward": ", log", "distribute": ", nan_too"}.get(name, "")
        out += [_kernel(prefix, name, f"{args}, outer, red, inner, nic, ib{flag}", body, False) for prefix in _VARIANTS]
    out.append(_INDEX_BACKWARD)
    return "".join(out)


_module = None
_threads = 1


def _kernels():
    global _module, _threads
    if _module is None:
        import numba
        _threads = numba.get_num_threads()
        _module = load_module("reduce", _source())
    return _module


# -- layout ---------------------------------------------------------------------------------------
class _Plan:
    """``x`` as a contiguous ``(outer, red, inner)`` block in ``flat``; ``order`` lists x's dims
    in the block's order, so an array laid out like the block maps back with ``unplan``."""
    __slots__ = ("flat", "outer", "red", "inner", "order", "shape")

    def unplan(self, block):
        """``block`` (the block's layout, flat) as an array of x's shape (a view)."""
        order = self.order
        if order is None:
            return block.reshape(self.shape)
        return block.reshape([self.shape[d] for d in order]).transpose(np.argsort(order))


def _plan(x, dims, ordered=False, copy=True):
    """Lay ``x`` out with the reduced ``dims`` (sorted) together; with ``ordered`` the reduced
    dims must also keep their logical order (for flat indices over several dims). Where x's
    memory is no such block: a copy, or None without ``copy``."""
    p = _Plan()
    shape = x.shape
    p.shape = shape
    p.order = None
    live = [d for d in range(len(shape)) if shape[d] != 1]
    if x.flags.c_contiguous or x.size == 0:
        order = live
        flat = x.reshape(-1)
    else:
        order = sorted(live, key=lambda d: -x.strides[d])
        expected = x.itemsize
        for d in reversed(order):
            if x.strides[d] != expected:
                order = None
                break
            expected *= shape[d]
        flat = flat_buffer(x) if order is not None else None
    if order is not None:
        block = _block(shape, order, dims, ordered)
        if block is not None:
            p.flat = flat
            p.outer, p.red, p.inner = block
            if order != live:
                p.order = order + [d for d in range(len(shape)) if shape[d] == 1]
            return p
    if not copy:
        return None
    kept = [d for d in range(len(shape)) if d not in dims]
    perm = kept + list(dims)
    p.flat = copy_of(x.transpose(perm)).reshape(-1)
    p.outer = math.prod(shape[d] for d in kept)
    p.red = math.prod(shape[d] for d in dims)
    p.inner = 1
    p.order = perm
    return p


def _block(shape, order, dims, ordered):
    """(outer, red, inner) if, in ``order``, the reduced dims form one run and the kept dims
    (and with ``ordered`` the reduced ones) appear in increasing order; else None."""
    outer = red = inner = 1
    state = 0                                  # 0: before the run, 1: in it, 2: after it
    last_kept = last_red = -1
    for d in order:
        n = shape[d]
        if d in dims:
            if state == 2 or (ordered and d < last_red):
                return None
            state = 1
            last_red = d
            red *= n
        else:
            if d < last_kept:
                return None
            last_kept = d
            if state == 0:
                outer *= n
            else:
                state = 2
                inner *= n
    return outer, red, inner


def _merge(dims):
    """(size, stride) pairs, outermost first, with neighbours that step as one merged."""
    out = []
    for n, st in dims:
        if out and out[-1][1] == n * st:
            out[-1] = (out[-1][0] * n, st)
        else:
            out.append((n, st))
    return out


def _layout(x, dims, ordered=False):
    """``x`` as the accumulation and extreme kernels read it: (arrays, block, kernel suffix).
    A contiguous block where x's memory is one (``_plan``); else x in place through its
    strides (broadcast, sliced, permuted), its reduced dims in runs along the smallest
    stride (in logical order with ``ordered``). Outputs come in x's logical order: the last
    kept dim is the block's columns when it steps through memory closer than the reduced
    ones, else each output reduces alone."""
    p = _plan(x, dims, ordered, copy=False)
    if p is not None:
        return (p.flat,), (p.outer, p.red, p.inner), ""
    item = x.itemsize
    kept, red = [], []
    one = x.size > 0                           # every dim broadcast: x is one element repeated
    for d, (n, st) in enumerate(zip(x.shape, x.strides)):
        if n != 1:
            (red if d in dims else kept).append((n, st // item))
            one = one and st == 0
    if not ordered and len(red) > 1:
        red.sort(key=lambda e: -e[1])
    kept, red = _merge(kept), _merge(red) or [(1, 0)]
    inner, sx = 1, 0
    if kept and 0 < kept[-1][1] < red[-1][1]:
        inner, sx = kept.pop()
    sizes, strides = zip(*(kept + red))
    a = np.array(sizes + strides, np.int64)     # contiguous slices of it: one kernel variant
    k, m = len(kept), len(sizes)
    # one element: a view of it (flat_buffer's as_strided costs microseconds)
    flat = x[(slice(0, 1),) * x.ndim].reshape(1) if one else flat_buffer(x)
    block = (math.prod(sizes[:k]), math.prod(sizes[k:]), inner)
    return (flat, a[:k], a[m:m + k], a[k:m], a[m + k:], sx), block, "_strided"


def keep_shape(shape, dims):
    """``shape`` with the reduced ``dims`` set to 1 (the keepdim shape)."""
    return tuple(1 if d in dims else n for d, n in enumerate(shape))


def _contiguous_flat(a):
    return (a if a.flags.c_contiguous else copy_of(a)).reshape(-1)


def _grid(outer, red, inner, split_red):
    """Tasks of a launch: (nrc, nic, rb, ib) = reduced chunks, column blocks and their sizes.
    Serial launches take one task per slab; parallel ones cut columns, then (where the
    partial results can be combined) the reduced range, until every thread has work."""
    nrc = nic = 1
    if outer * red * inner >= PARALLEL_MIN:
        want = 4 * _threads
        if outer < want:
            if inner >= 512:
                nic = min(-(-want // outer), inner // 256)
            if split_red and outer * nic < want and red >= 4096:
                nrc = min(-(-want // (outer * nic)), red // 2048)
    ib = -(-inner // nic) if inner else 0
    nic = -(-inner // ib) if ib else 1
    rb = -(-red // nrc) if red else 0
    nrc = -(-red // rb) if rb else 1
    return nrc, nic, rb, ib


def _launch(name, block, arrays, scalars=(), part=None, lines=False):
    """Run kernel ``name`` (serial or parallel by size) over ``block`` = (outer, red, inner).
    Accumulations get a buffer for partial results of the dtype of ``part``."""
    outer, red, inner = block
    if outer * inner == 0:
        return
    k = _kernels()
    nrc, nic, rb, ib = _grid(outer, red, inner, not lines)
    grid = (outer, red, inner, nic, ib) if lines else (outer, red, inner, nrc, nic, rb, ib)
    if part is not None:
        arrays += (np.empty(outer * nrc * inner if nrc > 1 else 1, part.dtype),)
    if outer * red * inner >= PARALLEL_MIN:
        with parallel_lock:
            getattr(k, "p_" + name)(*arrays, *grid, *scalars)
    else:
        getattr(k, "s_" + name)(*arrays, *grid, *scalars)


_NO_CENTER = np.zeros(1)


# -- reductions ---------------------------------------------------------------------------------------
def _accumulate(name, x, dims, out_dtype, zero, scale=1, center=_NO_CENTER):
    if len(dims) == x.ndim and x.flags.c_contiguous:
        if 0 < x.size < PARALLEL_MIN and center is _NO_CENTER:
            total = getattr(_kernels(), f"s_{name}_total")(x.reshape(-1), zero, scale)
            return np.full((1,) * x.ndim, total, out_dtype)
        # all of it (a loss): no layout to plan
        arrays, block, suffix = (x.reshape(-1),), (1, x.size, 1), ""
    else:
        arrays, block, suffix = _layout(x, dims)
    out = np.empty(block[0] * block[2], out_dtype)
    _launch(name + suffix, block, arrays + (center, out), (zero, scale), part=zero)
    return out.reshape(keep_shape(x.shape, dims))


_INT_ZERO, _FLOAT_ZERO = np.int64(0), np.float64(0)


def _zero(dtype):
    return _INT_ZERO if dtype.kind in "iub" else _FLOAT_ZERO


def sum(x, dims, out_dtype, scale=1):
    """Sum over ``dims`` (sorted, distinct) times ``scale``; keepdim shape. Integer and bool
    inputs sum in int64; floats accumulate in float64."""
    out_dtype = np.dtype(out_dtype)
    return _accumulate("sum", x, dims, out_dtype, _zero(out_dtype), scale)


def prod(x, dims, out_dtype):
    out_dtype = np.dtype(out_dtype)
    one = np.int64(1) if out_dtype.kind in "iub" else np.float64(1)
    return _accumulate("prod", x, dims, out_dtype, one)


def var(x, dims, correction, root=False):
    """(variance, or with ``root`` the standard deviation, and mean) over ``dims``, keepdim
    shapes; two passes, so no cancellation. The mean is float64."""
    n = math.prod(x.shape[d] for d in dims)
    mean = _accumulate("sum", x, dims, np.float64, np.float64(0), 1.0 / n if n else math.nan)
    dof = n - correction
    scale = 1.0 / dof if dof > 0 else math.inf
    return _accumulate("std" if root else "var", x, dims, x.dtype, np.float64(0), scale, mean.reshape(-1)), mean


def count_zeros(x):
    """The number of zeros in ``x``."""
    return int(_accumulate("count_zeros", x, tuple(range(x.ndim)), np.int64, _INT_ZERO).reshape(-1)[0])


def logsumexp(x, dims):
    """log(sum(exp(x))) over ``dims``, shifted by the maximum; keepdim shape."""
    if x.size == 0:                            # no maximum: shift by 0, log(0) = -inf
        center = np.zeros(math.prod(keep_shape(x.shape, dims)))
    else:
        center = max(x, dims)[0].reshape(-1)
    return _accumulate("logsumexp", x, dims, x.dtype, np.float64(0), 1, center)


def max(x, dims, smallest=False, ordered=False):
    """(values, indices) of the maximum (``smallest``: minimum) over ``dims``, keepdim shapes;
    an index counts positions in the reduced block: along the dim for one dim, and the flat
    index over several dims when ``ordered``. NaN is the maximum, ties take the first."""
    arrays, block, suffix = _layout(x, dims, ordered)
    vals = np.empty(block[0] * block[2], x.dtype)
    idx = np.empty(block[0] * block[2], np.int64)
    _launch(("min" if smallest else "max") + suffix, block, arrays + (vals, idx))
    shape = keep_shape(x.shape, dims)
    return vals.reshape(shape), idx.reshape(shape)


# -- softmax ---------------------------------------------------------------------------------------------
def _line_block(shape, dim):
    return (math.prod(shape[:dim]), shape[dim] if shape else 1, math.prod(shape[dim + 1:]))


def softmax(x, dim, log=False):
    """softmax (``log``: log_softmax) along ``dim``; C-contiguous output of x's dtype."""
    flat = _contiguous_flat(x)
    y = np.empty(x.shape, x.dtype)
    _launch("softmax", _line_block(x.shape, dim), (flat, y.reshape(-1)), (log,), lines=True)
    return y


def softmax_backward(g, y, dim, log=False):
    """The gradient of softmax (``log``: log_softmax) from its output ``y`` (C-contiguous)."""
    check_saved("softmax backward", g, y)
    gx = np.empty(y.shape, y.dtype)
    _launch("softmax_backward", _line_block(y.shape, dim), (_contiguous_flat(g), y.reshape(-1), gx.reshape(-1)),
            (log,), lines=True)
    return gx


# -- backward steps of the extreme values and of prod ---------------------------------------------------------
def check_saved(name, g, x, dims=(), *others):
    """Tensors saved for backward may have been given other ``.data`` since: ``x`` must still
    reduce over ``dims`` to the gradient ``g``'s shape, ``others`` have that shape, and all of
    them g's dtype, or a kernel would read or write past them."""
    for a, shape in [(x, keep_shape(x.shape, dims))] + [(a, a.shape) for a in others]:
        if shape != g.shape or a.dtype != g.dtype:
            raise RuntimeError(f"{name}: a tensor saved for backward was given .data of another shape or dtype "
                               f"({a.dtype} of shape {list(a.shape)})")


def index_backward(g, idx, shape, dim, dtype):
    """Zeros of ``shape`` with ``g`` (keepdim shape) at ``idx`` along ``dim``. The indices
    were saved for backward and may have been changed through ``.data`` since: one outside
    the dim raises PyTorch's error, and nothing is written outside ``shape``."""
    gx = np.zeros(shape, dtype)
    if gx.size:
        if idx.size != g.size or idx.dtype != np.int64:
            raise RuntimeError("max/min backward: the indices saved for backward were given .data of another shape or "
                               f"dtype ({idx.dtype} of shape {list(idx.shape)})")
        outer, red, inner = _line_block(shape, dim)
        idx = _contiguous_flat(idx)
        bad = _kernels().index_backward(_contiguous_flat(g), idx, gx.reshape(-1), red, inner)
        if bad >= 0:
            raise RuntimeError(f"index {idx[bad]} is out of bounds for dimension {dim} with size {red}")
    return gx


def distribute_backward(g, x, m, dims, nan_too=False):
    """``g`` (keepdim shape) shared evenly among the positions of x equal to its extreme ``m``
    over ``dims`` (with ``nan_too``, among the NaNs where m is NaN). Returns x's shape, possibly
    as a transposed view of a fresh array."""
    check_saved("max/min backward", g, x, dims, m)
    p = _plan(x, dims)
    gx = np.empty(p.outer * p.red * p.inner, x.dtype)
    _launch("distribute", (p.outer, p.red, p.inner), (p.flat, _contiguous_flat(m), _contiguous_flat(g), gx),
            (nan_too,), lines=True)
    return p.unplan(gx)


def prod_backward(g, x, dims):
    """``g`` (keepdim shape) times the product of the other elements of each reduced slice."""
    check_saved("prod backward", g, x, dims)
    p = _plan(x, dims)
    gx = np.empty(p.outer * p.red * p.inner, x.dtype)
    _launch("prod_backward", (p.outer, p.red, p.inner), (p.flat, _contiguous_flat(g), gx), lines=True)
    return p.unplan(gx)
