"""Fusion and code generation: a captured graph becomes a few Numba kernels and a short
list of steps that run them.

Fusion groups are maximal sets of pointwise nodes of one shape (operands of other shapes
broadcast into them), each with at most one reduction over all of it absorbed at its end (the
polynomial and its sum are one pass). A group is one generated kernel: a loop over its
elements whose body is the table's forward expressions as straight-line statements. Its
backward is a second kernel generated from the table's derivative expressions: it recomputes
the group's values from the group's inputs (cheaper than saving them: an elementwise value
costs a few instructions, a saved one a pass over memory) and writes the gradient of each
input. Matrix products keep BLAS; transposes and reshapes are views; ``log_softmax`` read only
by ``nll_loss`` becomes one fused cross-entropy step (``fused.py``).

Statements are folded where operands are numbers (``_Fold``: ``x ** 2`` is ``x * x``, ``where``
on a known condition is its branch, a gradient of 1 drops out) and every literal left is a
module constant of the group's dtype, so float32 stays float32 (Numba would widen it with a
bare ``1.0``). What keeps a loop from vectorizing is avoided: a sum runs in blocks added by
``vmath.vsum`` (``_Kernel``), and float32 ``tanh`` is computed from vmath's exp (``_TANH32``)
instead of a libm call per element.

When the whole graph is one group that ends in a reduction to a number (a loss), the forward
kernel also writes the gradients for an incoming gradient of 1 (backprop is linear in it):
one pass over memory then does forward and backward, and backward only scales them when
the incoming gradient is not 1.

The generated kernels are those of the inputs' target: ``njit`` loops on the CPU, ``cuda.jit``
grid-stride kernels on CUDA (``cuda_codegen.py``: the same statements from the same writer,
in another loop; ``Program.runner`` says how each target's kernels are written and launched),
and everything else a program does to memory (allocation, copies, the steps that are not
fused) goes through that target. Generated modules go through ``ops._cache.load_module``:
keyed by a hash of their source, with Numba's on-disk cache, so a second process compiles
nothing.
"""
import ast
import functools
import math
import re

import numpy as np

from nbgrad.ops import vmath
from nbgrad.ops._cache import load_module
from nbgrad.ops.elementwise import PARALLEL_MIN, parallel_lock
from nbgrad.ops.table import TABLE
from nbgrad.ops.targets import CPU, target_for, target_of

from .fused import CrossEntropy, fuse
from .memory import LARGE, keep_large_buffers
from .steps import _op_backward, _reduce_to, _run_op, _total

__all__ = ["Program", "build"]


# -- fusion --------------------------------------------------------------------------------------------
class Group:
    """Pointwise nodes computed in one loop, and the reduction absorbed at its end."""

    def __init__(self, gid, shape, dtype):
        self.id, self.shape, self.dtype = gid, shape, dtype
        self.members = []
        self.terminal = None                   # a "sum" node over all of one member
        self.deps = set()                      # ids of groups this one reads from (transitively)

    @property
    def size(self):
        return math.prod(self.shape)

    def __repr__(self):
        end = f" -> sum %{self.terminal.index}" if self.terminal is not None else ""
        return f"group {self.id} {list(self.shape)}: " + ", ".join(f"%{m.index}" for m in self.members) + end


def _partition(graph):
    """Fusion groups, and the units (groups and the other nodes, inputs excluded) in an order
    that runs. A pointwise node joins the groups of its operands of its shape, merging them,
    unless an operand it reads from outside them depends on one of them (that would be a
    cycle: the group would need a value computed from itself)."""
    parent, groups, group_of, deps, consumers = {}, {}, {}, {}, {}

    def find(gid):
        while parent[gid] != gid:
            gid = parent[gid]
        return gid

    def depends(node_deps, gid):
        return any(find(x) == gid for x in node_deps)

    for n in graph.nodes:
        operands = [a for a in n.args if hasattr(a, "index")]
        for a in operands:
            consumers.setdefault(a.index, []).append(n)
        d = set()
        for a in operands:
            d |= deps[a.index]
            if a.index in group_of:
                d.add(group_of[a.index])
        deps[n.index] = d
        if n.op != "pointwise":
            continue
        joined = []
        for a in operands:
            gid = find(group_of[a.index]) if a.index in group_of else None
            if gid is None or gid in joined or groups[gid].shape != n.shape:
                continue
            if any(depends(groups[j].deps, gid) or depends(groups[gid].deps, j) for j in joined):
                continue
            outside = [b for b in operands if b.index not in group_of or find(group_of[b.index]) not in joined + [gid]]
            if any(depends(deps[b.index] | ({group_of[b.index]} if b.index in group_of else set()), g)
                   for b in outside for g in joined + [gid]):
                continue
            joined.append(gid)
        if joined:
            home = groups[joined[0]]
            for gid in joined[1:]:
                parent[gid] = home.id
                merged = groups.pop(gid)
                home.members += merged.members
                home.deps |= merged.deps
        else:
            home = groups[len(parent)] = Group(len(parent), n.shape, n.dtype)
            parent[home.id] = home.id
        home.members.append(n)
        home.deps |= d
        group_of[n.index] = home.id
    for g in groups.values():
        g.members.sort(key=lambda m: m.index)
        g.deps = {find(x) for x in g.deps} - {g.id}
    # a sum over all of a group's last member, its only consumer, is the group's end
    for n in graph.nodes:
        if n.op == "sum" and len(n.params["dims"]) == len(n.args[0].shape) and n.args[0].index in group_of:
            g = groups[find(group_of[n.args[0].index])]
            if g.terminal is None and g.members[-1] is n.args[0] and not _is_output(graph, n.args[0]) and \
                    all(c is n for c in consumers.get(n.args[0].index, ())):
                g.terminal = n
                group_of[n.index] = g.id
    unit_of = {}
    for n in graph.nodes:
        if n.index in group_of:
            unit_of[n.index] = groups[find(group_of[n.index])]
        elif n.op != "input":
            unit_of[n.index] = n
    # Kahn's algorithm, earliest-created first
    units = list(dict.fromkeys(unit_of.values()))
    preds = {id(u): set() for u in units}
    for n in graph.nodes:
        u = unit_of.get(n.index)
        if u is None:
            continue
        for a in n.args:
            v = unit_of.get(getattr(a, "index", None))
            if v is not None and v is not u:
                preds[id(u)].add(id(v))
    order, done = [], set()
    while len(order) < len(units):
        ready = next(u for u in units if id(u) not in done and preds[id(u)] <= done)
        order.append(ready)
        done.add(id(ready))
    group_of = {k: groups[find(v)] for k, v in group_of.items()}
    return order, group_of, consumers


def _output_list(out):
    if isinstance(out, (tuple, list)):
        return [n for o in out for n in _output_list(o)]
    return [out] if hasattr(out, "op") else []


def _is_output(graph, node):
    found = []

    def walk(v):
        if isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
        elif v is node:
            found.append(v)
    walk(graph.outputs)
    return bool(found)


# -- expressions ----------------------------------------------------------------------------------------
def _number(node):
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, bool)


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b}
_COMPARE = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
            ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}


class _Fold(ast.NodeTransformer):
    """Constant folding over an expression whose operands may be numbers: ``where`` on a known
    condition picks its branch, ``power(x, 2)`` and ``power(x, 3)`` become products, ``x * 1``
    and ``x / 1`` become ``x``, arithmetic and comparisons of numbers are computed. Every fold
    keeps the value exactly (no ``x * 0``: ``x`` may be infinite or NaN)."""

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if _number(node.operand):
            if isinstance(node.op, ast.USub) and type(node.operand.value) is not bool:
                return ast.Constant(-node.operand.value)
            if isinstance(node.op, ast.Not):
                return ast.Constant(not node.operand.value)
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        a, b, op = node.left, node.right, type(node.op)
        if _number(a) and _number(b):
            if op in _BINARY:
                return ast.Constant(_BINARY[op](a.value, b.value))
            if op is ast.Div and b.value != 0:
                return ast.Constant(a.value / b.value)
        if op is ast.Mult:
            if _number(b) and b.value == 1 and type(b.value) is not bool:
                return a
            if _number(a) and a.value == 1 and type(a.value) is not bool:
                return b
        if op is ast.Div and _number(b) and b.value == 1 and type(b.value) is not bool:
            return a
        if op in (ast.BitAnd, ast.BitOr):       # on comparisons: a known side decides or drops out
            for known, other in ((a, b), (b, a)):
                if _number(known) and type(known.value) is bool:
                    if known.value == (op is ast.BitOr):
                        return known
                    return other
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) == 1 and _number(node.left) and _number(node.comparators[0]):
            return ast.Constant(_COMPARE[type(node.ops[0])](node.left.value, node.comparators[0].value))
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        name = getattr(node.func, "id", None)
        if name == "where" and len(node.args) == 3 and _number(node.args[0]):
            return node.args[1] if node.args[0].value else node.args[2]
        if name == "power" and len(node.args) == 2 and _number(node.args[1]) and not _number(node.args[0]):
            x, b = node.args
            if b.value == 1:
                return x
            if b.value in (2, 3):
                square = ast.BinOp(x, ast.Mult(), x)
                return square if b.value == 2 else ast.BinOp(square, ast.Mult(), x)
        return node


class _Marked(ast.NodeTransformer):
    """Numbers as ``\0value\0`` markers, for ``_expression`` to type."""

    def visit_Constant(self, node):
        if type(node.value) in (int, float):
            return ast.Name(id=f"\0{node.value!r}\0", ctx=ast.Load())
        return node


@functools.lru_cache(maxsize=4096)
def _folded(expr, numbers):
    """``expr`` with the operands in ``numbers`` ((name, value) pairs) replaced by their values
    and folded: a number, or source whose other operands keep their names and whose numbers
    are marked (cached: a chain repeats a few expressions on many operands)."""
    values = dict(numbers)

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.Constant(values[node.id]) if node.id in values else node
    tree = ast.parse(expr, mode="eval")
    tree = ast.fix_missing_locations(_Fold().visit(Rename().visit(tree)))
    if _number(tree.body) and type(tree.body.value) is not bool:
        return tree.body.value
    return ast.unparse(_Marked().visit(tree))


_TOKEN = re.compile(r"\0([^\0]*)\0|[A-Za-z_]\w*")


def _expression(expr, names, constant):
    """``expr`` with its operands replaced by ``names`` (variable names, or numbers), folded:
    a number if it folds to one, else the source of a statement's right-hand side, its numbers
    spelled as ``constant(value)`` names."""
    numbers = tuple(sorted((k, v) for k, v in names.items() if not isinstance(v, str)))
    folded = _folded(expr, numbers)
    if not isinstance(folded, str):
        return folded

    def replace(match):
        if match.group(1) is not None:
            return constant(float(match.group(1)))
        return names.get(match.group(0), match.group(0))
    return _TOKEN.sub(replace, folded)


_TANH = re.compile(r"\btanh\(")

# float32 tanh, computed in float64 from vmath's exp (which vectorizes, where libm's tanhf is a call
# per element): e = exp(2x), (e - 1) / (e + 1) has a relative error far below float32's rounding
# for |x| >= 2^-12 (e - 1 is exact for e in [1, 2]); below it tanh(x) rounds to x; |x| is clamped
# to 20 (tanh(20) rounds to 1), NaN passes. It equalled tanh computed in float64 and rounded on
# a sweep of 44 million float32 values (the test allows 1 ulp), where libm's tanhf is a call per
# element that keeps the loop scalar: the chain of 25 tanh on 5x5 went 20 -> 6 us.
_TANH32 = vmath.import_line("exp").replace(" import exp ", " import exp as _vexp ") + """
@njit(cache=True, nogil=True, error_model='numpy')
def tanh32(x):
    d = np.float64(x)
    c = 20.0 if d > 20.0 else d
    c = -20.0 if c < -20.0 else c
    e = _vexp(c + c)
    return np.float32(d if abs(d) < 2.44140625e-4 else (e - 1.0) / (e + 1.0))
"""


def _mode(shape, target):
    """How an operand of ``shape`` is read in a loop over ``target`` (C order), by flat
    index ``i``: ``("full", 0)``, ``("one", 0)``, ``("inner", k)`` (``i % k``),
    ``("outer", k)`` (``i // k``), or None (broadcast some other way: copy it first)."""
    size = math.prod(shape)
    if size == 1:
        return ("one", 0)
    shape = (1,) * (len(target) - len(shape)) + tuple(shape)
    if shape == tuple(target):
        return ("full", 0)
    for k in range(len(target) + 1):
        if shape[:k] == (1,) * k and shape[k:] == tuple(target[k:]):
            return ("inner", math.prod(target[k:]))
        if shape[:k] == tuple(target[:k]) and shape[k:] == (1,) * (len(target) - k):
            return ("outer", math.prod(target[k:]))
    return None


def _read(array, mode):
    kind, k = mode
    return {"full": f"{array}[i]", "one": f"{array}[0]", "inner": f"{array}[i % {k}]",
            "outer": f"{array}[i // {k}]"}[kind]


class _Kernel:
    """Source of one generated loop, and how to call it.

    A loop that sums a value (``reduces``: its name) runs in blocks of ``_BLOCK`` elements: each
    block's values go to a small buffer and vmath's ``vsum`` adds it (in whatever order
    vectorizes), so the loop over a block has no chain of adds through one accumulator and
    vectorizes too, while every value is computed exactly as written. In parallel, ``_CHUNKS``
    runs of blocks share the threads, each run one call of the serial function (a loop
    inside ``prange`` itself would not vectorize)."""

    def __init__(self, name, group):
        self.name, self.group = name, group
        self.params = []                       # (kind, key): kind in in/out/gout/gin/scalar
        self.body = []
        self.reduces = None

    def param(self, kind, key):
        name = f"{kind}{len(self.params)}"
        self.params.append((kind, key, name))
        return name

    def source(self, parallel, target=CPU):
        """The loop over the body: an ``njit`` one here, a CUDA kernel for the CUDA target."""
        if target is not CPU:
            from .cuda_codegen import kernel_source
            return kernel_source(self)
        loop = "prange" if parallel else "range"
        names = ", ".join(p[2] for p in self.params)
        head = [f"@njit(cache=True, nogil=True, error_model='numpy'{', parallel=True' if parallel else ''})",
                f"def {self.name}_{'p' if parallel else 's'}({names}):"]
        size = self.group.size
        if self.reduces is None:
            lines = head + [f"    for i in {loop}({size}):"] + ["        " + line for line in self.body]
            return "\n".join(lines + ["    return 0.0"]) + "\n"
        blocks = -(-size // _BLOCK)
        lines = ["@njit(cache=True, nogil=True, error_model='numpy')",
                 f"def {self.name}_blocks(first, last, {names}):",
                 "    part = 0.0",
                 f"    tmp = np.empty({_BLOCK}, np.float64)",
                 "    for k in range(first, last):",   # unsigned indices: no wraparound check, so it vectorizes
                 f"        b = np.uint64(k) * np.uint64({_BLOCK})",
                 f"        n = min(np.uint64({_BLOCK}), np.uint64({size}) - b)",
                 "        for j in range(n):",
                 "            i = b + j"] + ["            " + line for line in self.body] + \
                [f"            tmp[j] = {self.reduces}",
                 "        part += vsum(tmp[:n])",
                 "    return part", "", ""] + head
        if parallel:                           # each run of blocks is an ordinary (vectorized) call
            lines += ["    acc = 0.0",
                      f"    for c in prange({_CHUNKS}):",
                      f"        acc += {self.name}_blocks(c * {blocks} // {_CHUNKS}, (c + 1) * {blocks} // {_CHUNKS}, {names})",
                      "    return acc"]
        else:
            lines.append(f"    return {self.name}_blocks(0, {blocks}, {names})")
        return "\n".join(lines) + "\n"


_BLOCK = 512          # elements per block of a summing loop (its buffer stays in L1)
_CHUNKS = 64          # runs of blocks a parallel summing loop hands out


class _Writer:
    """Straight-line statements of a group, forward and backward."""

    def __init__(self, group, constants):
        self.group, self.constants = group, constants
        self.members = {m.index for m in group.members}

    def ref(self, a):
        if not hasattr(a, "index"):
            return a
        return f"v{a.index}" if a.index in self.members else f"e{a.index}"

    def typed(self, value, dtype):
        """A statement's right-hand side: an expression, or a number as a constant of ``dtype``."""
        return value if isinstance(value, str) else self.constants(value, dtype)

    def expression(self, expr, names, dtype):
        out = _expression(expr, names, lambda v: self.constants(v, dtype))
        if isinstance(out, str) and dtype.itemsize == 4:
            out = _TANH.sub("tanh32(", out)
        return out

    def externals(self):
        seen = {}
        for m in self.group.members:
            for a in m.args:
                if hasattr(a, "index") and a.index not in self.members:
                    seen.setdefault(a.index, a)
        return list(seen.values())

    def forward(self, kernel):
        for e in self.externals():
            mode = _mode(e.shape, self.group.shape)
            kernel.body.append(f"e{e.index} = {_read(kernel.param('in', e), mode or ('full', 0))}")
        for m in self.group.members:
            record = TABLE[m.params["record"]]
            names = dict(zip(record.operands, (self.ref(a) for a in m.args)))
            dtype = m.params.get("compute", m.dtype)       # the operands' dtype where the value's differs
            kernel.body.append(f"v{m.index} = {self.typed(self.expression(record.forward, names, dtype), m.dtype)}")

    def backward(self, kernel, upstream, wanted):
        """Adjoint statements: ``upstream`` maps a member's index to its incoming gradient's
        parts (expressions, or numbers); writes ``d{e}`` for the external operands in ``wanted``.
        A gradient that folds to a number stays a number (a loss's seed of 1 folds away)."""
        contributions = {k: list(v) for k, v in upstream.items()}
        for m in reversed(self.group.members):
            parts = contributions.get(m.index)
            if not parts:
                continue
            dtype = m.params.get("compute", m.dtype)
            total = self._sum(parts, dtype)
            if isinstance(total, str):
                kernel.body.append(f"a{m.index} = {total}")
                total = f"a{m.index}"
            record = TABLE[m.params["record"]]
            names = dict(zip(record.operands, (self.ref(a) for a in m.args)))
            names.update(g=total, y=f"v{m.index}")
            for arg, a in zip(record.args, m.args):
                expr = record.grads.get(arg)
                if expr in (None, "0") or not hasattr(a, "index") or not a.requires_grad:
                    continue
                if a.index not in self.members and a.index not in wanted:
                    continue
                part = self.expression(expr, names, dtype)
                contributions.setdefault(a.index, []).append(part if not isinstance(part, str) else f"({part})")
        for e in wanted:
            parts = contributions.get(e)
            dtype = self.group.dtype
            kernel.body.append(f"d{e} = {self.typed(self._sum(parts, dtype), dtype) if parts else self.constants(0, dtype)}")

    def _sum(self, parts, dtype):
        """The parts' sum: a number when they all are, else an expression (numbers typed)."""
        numbers = [p for p in parts if not isinstance(p, str)]
        terms = [p for p in parts if isinstance(p, str)]
        if not terms:
            return sum(numbers)
        if numbers and sum(numbers) != 0:
            terms.append(self.constants(sum(numbers), dtype))
        return " + ".join(terms)


# -- the program ------------------------------------------------------------------------------------------
class Program:
    """Runs a captured graph: ``forward(arrays)`` and, from what it kept, ``backward``."""

    def __init__(self, graph):
        self.graph = graph
        self._target(graph)
        self.units, self.group_of, self.consumers = _partition(graph)
        if self.target is CPU:                 # the fused cross-entropy kernels are the CPU target's
            self.units = fuse(self.units, self.consumers, {n.index for n in _output_list(graph.outputs)})
        self.constants = {}
        self.kernels = {}
        self.differentiable = [n for n in graph.inputs if n.requires_grad]
        self.joint = None
        self._generate()
        if self.target is CPU and any(n.size * n.dtype.itemsize >= LARGE for n in graph.nodes):
            keep_large_buffers()

    def _target(self, graph):
        """The target of the graph's inputs, and how kernels are written and launched on it."""
        self.target = target_for(graph.device.type)
        if self.target is CPU:
            self.runner = _CPU_RUNNER
        else:
            from .cuda_codegen import RUNNER
            self.runner = RUNNER

    # constants are module globals of the group's dtype, so float32 stays float32
    def _constant(self, value, dtype):
        key = (float(value), dtype.name)
        name = self.constants.get(key)
        if name is None:
            name = self.constants[key] = f"C{len(self.constants)}"
        return name

    def _generate(self):
        graph = self.graph
        groups = [u for u in self.units if not hasattr(u, "op")]
        only = groups[0] if len(self.units) == 1 and groups else None
        for g in groups:
            writer = _Writer(g, self._constant)
            fwd = _Kernel(f"group{g.id}_forward", g)
            writer.forward(fwd)
            outs = self._materialized(g)
            for m in outs:
                fwd.body.append(f"{fwd.param('out', m)}[i] = v{m.index}")
            if g.terminal is not None:
                fwd.reduces = f"v{g.terminal.args[0].index}"
            wanted = [e.index for e in writer.externals() if e.requires_grad]
            if only is not None and g.terminal is not None and g.terminal.requires_grad and \
                    _is_output(graph, g.terminal) and not outs:
                # one pass: the gradients for an incoming gradient of 1, in the forward loop
                writer.backward(fwd, {g.terminal.args[0].index: [g.terminal.params["scale"]]}, wanted)
                for e in wanted:
                    fwd.body.append(f"{fwd.param('gin', e)}[i] = d{e}")
                self.joint = g
            bwd = None
            if g.members and any(m.requires_grad for m in g.members) and self.joint is not g:
                bwd = _Kernel(f"group{g.id}_backward", g)
                writer.forward(bwd)
                upstream = {}
                for m in outs:
                    upstream[m.index] = [f"{_read(bwd.param('gout', m), ('full', 0))}"]
                if g.terminal is not None:
                    scale = self._constant(g.terminal.params["scale"], g.terminal.dtype)
                    upstream.setdefault(g.terminal.args[0].index, []).append(f"{bwd.param('scalar', g.terminal)} * {scale}")
                writer.backward(bwd, upstream, wanted)
                for e in wanted:
                    bwd.body.append(f"{bwd.param('gin', e)}[i] = d{e}")
            self.kernels[g.id] = (g, fwd, bwd)
        self.source = self._source()
        self.module = load_module(self.runner.stem, self.source)
        self.calls = {}
        suffix = self.runner.suffix
        for g, fwd, bwd in self.kernels.values():
            parallel = g.size >= PARALLEL_MIN
            self.calls[g.id] = (getattr(self.module, f"{fwd.name}_{suffix(parallel)}"),
                                bwd and getattr(self.module, f"{bwd.name}_{suffix(parallel)}"), parallel)
        self.input_indices = [n.index for n in self.graph.inputs]
        self.plans = self._plans()

    def _materialized(self, g):
        """Members whose value is read outside the group (or returned)."""
        members = {m.index for m in g.members}
        out = []
        for m in g.members:
            outside = [c for c in self.consumers.get(m.index, ()) if c.index not in members and c is not g.terminal]
            if outside or _is_output(self.graph, m):
                out.append(m)
        return out

    def _source(self):
        from nbgrad.ops import scalar
        used = set()
        for _, fwd, bwd in self.kernels.values():
            for k in (fwd, bwd):
                if k is not None:
                    for line in k.body:
                        used |= set(re.findall(r"[A-Za-z_]\w*", line)) & set(scalar.__all__)
        parts = [self.runner.header]
        if used:
            parts.append(scalar.import_line(*sorted(used)))
        if any(k is not None and k.reduces is not None for _, fwd, bwd in self.kernels.values() for k in (fwd, bwd)):
            parts.append(vmath.import_line("vsum"))
        if any("tanh32(" in line for _, fwd, bwd in self.kernels.values() for k in (fwd, bwd) if k is not None
               for line in k.body):
            parts.append(_TANH32)
        for (value, dtype), name in self.constants.items():
            literal = repr(value) if math.isfinite(value) else f"float('{value!r}')"
            parts.append(f"{name} = np.{dtype}({literal})\n")
        for _, fwd, bwd in self.kernels.values():
            for k in (fwd, bwd):
                if k is not None:
                    size = k.group.size
                    parts.append("\n" + k.source(size >= PARALLEL_MIN, self.target))
        return "".join(parts)

    # -- running ---------------------------------------------------------------------------------------
    def _plans(self):
        """Per group, what a call hands its forward kernel, worked out once: positions of the
        inputs (and the shape of those that broadcast some other way: copied first), of the
        outputs and of the joint gradients, with their dtypes; the sum's node."""
        plans = {}
        for gid, (g, fwd, _) in self.kernels.items():
            kernel, _, parallel = self.calls[gid]
            ins, outs, gins = [], [], []
            for pos, (kind, key, _) in enumerate(fwd.params):
                if kind == "in":
                    ins.append((pos, key.index, key.shape if _mode(key.shape, g.shape) is None else None))
                elif kind == "out":
                    outs.append((pos, key.index, key.dtype.numpy))
                else:
                    gins.append((pos, key, self.graph.nodes[key].dtype.numpy))
            end = g.terminal.index if g.terminal is not None else None
            plans[gid] = (kernel, parallel, len(fwd.params), ins, outs, gins, end, g.size)
        return plans

    def forward(self, arrays, want_grad):
        """Values of the outputs, and what backward needs (``env``, the joint gradients)."""
        env = dict(zip(self.input_indices, arrays))
        joint = None
        plans = self.plans
        T = self.target
        for unit in self.units:
            if type(unit) is not Group:
                env[unit.index] = unit.run(env) if type(unit) is CrossEntropy else _run_op(unit, env)
                continue
            kernel, parallel, count, ins, outs, gins, end, size = plans[unit.id]
            shape = unit.shape
            args = [None] * count
            for pos, index, broadcast in ins:
                a = env[index]
                if broadcast is not None:
                    a = T.copy_into(T.empty(shape, a.dtype), T.reshape(a, broadcast), fresh_out=True)
                args[pos] = T.reshape(T.contiguous(a), (-1,))
            for pos, index, dtype in outs:
                a = env[index] = T.empty(shape, dtype)
                args[pos] = T.reshape(a, (-1,))
            if gins:
                if not want_grad:
                    return self._without_joint(arrays)
                joint = {}
                for pos, key, dtype in gins:
                    a = joint[key] = T.empty(shape, dtype)
                    args[pos] = T.reshape(a, (-1,))
            acc = self.runner.launch(kernel, unit, parallel, args, end is not None) if size else None
            if end is not None:
                env[end] = self.runner.total(acc, unit)
        return env, joint

    def _without_joint(self, arrays):
        if getattr(self, "_plain", None) is None:
            self._plain = _PlainProgram(self)
        return self._plain.forward(arrays, False)

    def outputs(self, env):
        def value(v):
            if isinstance(v, (tuple, list)):
                return type(v)(value(x) for x in v)
            return env[v.index] if hasattr(v, "index") else v
        return value(self.graph.outputs)

    def backward(self, env, joint, pairs):
        """Gradients of the differentiable inputs (in ``self.differentiable`` order), given
        ``(output node, its gradient)`` pairs."""
        adj = {}
        if joint is not None:
            grad = pairs[0][1]
            g = self.runner.seed(grad)
            T = self.target
            for e in list(joint):
                a = joint.pop(e)               # the gradient's only holder, so .grad may take it uncopied
                if g != 1.0:
                    a = T.launch("mul", (a, T.reshape(grad, ()) if grad.size == 1 else grad), a.shape, a.dtype)
                adj[e] = [a]
        else:
            for node, grad in pairs:
                adj.setdefault(node.index, []).append(grad)
            for unit in reversed(self.units):
                if hasattr(unit, "op"):
                    g = adj.pop(unit.index, None)
                    if g is not None:
                        step = unit.backward if type(unit) is CrossEntropy else functools.partial(_op_backward, unit)
                        for node, contribution in step(env, _total(g, unit.shape, unit.dtype)):
                            adj.setdefault(node.index, []).append(contribution)
                    continue
                self._group_backward(unit, env, adj)
        result = []
        for n in self.differentiable:
            parts = adj.get(n.index)
            if parts and len(parts) == 1 and parts[0].shape == n.shape:
                grad = parts[0]
            elif parts:
                grad = _reduce_to(_total(parts, np.broadcast_shapes(n.shape, *(p.shape for p in parts)), n.dtype),
                                  n.shape)
            else:
                result.append(None)            # reached from no output that got a gradient
                continue
            result.append(self.target.contiguous(grad))
        return result

    def _group_backward(self, g, env, adj):
        _, bwd_kernel, parallel = self.calls[g.id]
        _, _, bwd = self.kernels[g.id]
        if bwd is None:
            return
        args, gins, anything, seeded = [], {}, False, set()
        for kind, key, _ in bwd.params:
            if kind == "in":
                args.append(_operand(env[key.index], key.shape, g.shape))
            elif kind == "gout":
                parts = adj.pop(key.index, None)
                anything |= parts is not None
                if parts is not None:
                    seeded.add(key.index)
                args.append(_operand(_total(parts, g.shape, key.dtype) if parts else
                                     self.target.zeros(g.shape, key.dtype.numpy), g.shape, g.shape))
            elif kind == "scalar":
                parts = adj.pop(key.index, None)
                anything |= parts is not None
                if parts is not None:
                    seeded.add(key.args[0].index)
                args.append(self.runner.scalar(_total(parts, (), g.dtype) if parts else None, g.dtype))
            else:
                gins[key] = self.target.empty(g.shape, self.graph.nodes[key].dtype.numpy)
                args.append(self.target.reshape(gins[key], (-1,)))
        if not anything:
            return
        if g.size:
            self.runner.launch(bwd_kernel, g, parallel, args)
        reached = _reached(g, seeded)
        for key, a in gins.items():
            if key in reached:                 # not only from members that got no gradient: None, as eagerly
                adj.setdefault(key, []).append(_reduce_to(a, self.graph.nodes[key].shape))


def _reached(g, seeded):
    """The indices of values that members of ``g`` with an incoming gradient (``seeded``) send
    gradients to, along the table's derivatives."""
    reached = set(seeded)
    for m in reversed(g.members):
        if m.index in reached:
            record = TABLE[m.params["record"]]
            reached |= {a.index for arg, a in zip(record.args, m.args)
                        if hasattr(a, "index") and record.grads.get(arg) is not None}
    return reached


class _PlainProgram(Program):
    """The same graph without the joint forward-backward pass (a call that records nothing)."""

    def __init__(self, program):
        self.graph = program.graph
        self.target, self.runner = program.target, program.runner
        self.units, self.group_of, self.consumers = program.units, program.group_of, program.consumers
        self.constants, self.kernels, self.differentiable = {}, {}, []
        self.joint = None
        saved = [n.requires_grad for n in self.graph.nodes]
        for n in self.graph.nodes:
            n.requires_grad = False
        try:
            self._generate()
        finally:
            for n, flag in zip(self.graph.nodes, saved):
                n.requires_grad = flag


def _operand(array, shape, target):
    """``array`` as a flat, C-contiguous operand of a loop over ``target`` (a shape)."""
    T = target_of(array)
    if _mode(shape, target) is None:
        out = T.empty(target, array.dtype)
        array = T.copy_into(out, T.reshape(array, shape), fresh_out=True)
    return T.reshape(T.contiguous(array), (-1,))


class _CpuRunner:
    """How a program writes and launches its kernels on the CPU target: ``njit`` loops, serial
    (``_s``) or ``prange``-parallel (``_p``, taking turns through ``parallel_lock``), which
    return the terminal reduction's sum as a number."""
    stem = "compiled"
    header = "import math\nfrom math import inf, nan\nimport numpy as np\nfrom numba import njit, prange\n"

    @staticmethod
    def suffix(parallel):
        return "p" if parallel else "s"

    @staticmethod
    def launch(kernel, group, parallel, args, reduces=False):
        if parallel:
            with parallel_lock:
                return kernel(*args)
        return kernel(*args)

    @staticmethod
    def total(acc, group):
        """The terminal reduction's value (of a group of no elements: 0, or NaN for a mean)."""
        t = group.terminal
        value = acc * t.params["scale"] if acc is not None else (math.nan if t.params["mean"] else 0.0)
        return CPU.reshape(CPU.scalar(value, t.dtype.numpy), t.shape)

    @staticmethod
    def seed(grad):
        """The incoming gradient of a joint pass as a number when it is one (1: nothing to scale)."""
        return float(grad) if grad.size == 1 else None

    @staticmethod
    def scalar(array, dtype):
        """A backward kernel's incoming gradient of a terminal reduction, as its argument."""
        return 0.0 if array is None else float(array.reshape(()))


_CPU_RUNNER = _CpuRunner()


def build(graph):
    return Program(graph)
