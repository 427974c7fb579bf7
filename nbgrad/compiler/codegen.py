"""Fusion and code generation: a captured graph becomes a few Numba kernels and a short
list of steps that run them.

Fusion groups are maximal sets of pointwise nodes of one shape (operands of other shapes
broadcast into them), each with at most one reduction over all of it absorbed at its end (the
polynomial and its sum are one pass). A group is one generated kernel: a loop over its
elements whose body is the table's forward expressions as straight-line statements. Its
backward is a second kernel generated from the table's derivative expressions: it recomputes
the group's values from the group's inputs (cheaper than saving them: an elementwise value
costs a few instructions, a saved one a pass over memory) and writes the gradient of each
input. Matrix products keep BLAS; transposes and reshapes are views.

When the whole graph is one group that ends in a reduction to a number (a loss), the forward
kernel also writes the gradients for an incoming gradient of 1 (backprop is linear in it):
one pass over memory then does forward and backward, and backward only scales them when
the incoming gradient is not 1.

The generated kernels are the CPU target's (``njit`` loops over its arrays), and everything
else a program does to memory (allocation, copies, the steps that are not fused) goes through
that target. Generated modules go through ``ops._cache.load_module``: keyed by a hash of their source,
with Numba's on-disk cache, so a second process compiles nothing.
"""
import ast
import functools
import math
import re

import numpy as np

from nbgrad.ops._cache import load_module
from nbgrad.ops.elementwise import PARALLEL_MIN, parallel_lock
from nbgrad.ops.table import TABLE
from nbgrad.ops.targets import CPU

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
@functools.lru_cache(maxsize=None)
def _parsed(expr):
    return ast.parse(expr, mode="eval")


def _rename(expr, names):
    """``expr`` with its variables renamed by ``names`` (functions keep their names)."""
    tree = _parsed(expr)

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.copy_location(ast.Name(id=names.get(node.id, node.id), ctx=node.ctx), node)
    return ast.unparse(Rename().visit(ast.parse(ast.unparse(tree), mode="eval")))


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
    """Source of one generated loop, and how to call it."""

    def __init__(self, name, group):
        self.name, self.group = name, group
        self.params = []                       # (kind, key): kind in in/out/gout/gin/scalar
        self.body = []
        self.reduces = False

    def param(self, kind, key):
        name = f"{kind}{len(self.params)}"
        self.params.append((kind, key, name))
        return name

    def source(self, parallel):
        loop = "prange" if parallel else "range"
        head = [f"@njit(cache=True, nogil=True, error_model='numpy'{', parallel=True' if parallel else ''})",
                f"def {self.name}_{'p' if parallel else 's'}({', '.join(p[2] for p in self.params)}):"]
        lines = ["    acc = 0.0"] if self.reduces else []
        lines.append(f"    for i in {loop}({self.group.size}):")
        lines += ["        " + line for line in self.body]
        lines.append("    return acc" if self.reduces else "    return 0.0")
        return "\n".join(head + lines) + "\n"


class _Writer:
    """Straight-line statements of a group, forward and backward."""

    def __init__(self, group, constants):
        self.group, self.constants = group, constants
        self.members = {m.index for m in group.members}

    def ref(self, a, dtype):
        if not hasattr(a, "index"):
            return self.constants(a, dtype)
        return f"v{a.index}" if a.index in self.members else f"e{a.index}"

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
            names = dict(zip(record.operands, (self.ref(a, m.params.get("compute", m.dtype)) for a in m.args)))
            kernel.body.append(f"v{m.index} = {_rename(record.forward, names)}")

    def backward(self, kernel, upstream, wanted):
        """Adjoint statements: ``upstream`` maps a member's index to the expressions of its
        incoming gradient; writes ``d{e}`` for the external operands in ``wanted``."""
        contributions = {k: list(v) for k, v in upstream.items()}
        for m in reversed(self.group.members):
            parts = contributions.get(m.index)
            if not parts:
                continue
            kernel.body.append(f"a{m.index} = {' + '.join(parts)}")
            record = TABLE[m.params["record"]]
            names = dict(zip(record.operands, (self.ref(a, m.params.get("compute", m.dtype)) for a in m.args)))
            names.update(g=f"a{m.index}", y=f"v{m.index}")
            for arg, a in zip(record.args, m.args):
                expr = record.grads.get(arg)
                if expr in (None, "0") or not hasattr(a, "index") or not a.requires_grad:
                    continue
                if a.index not in self.members and a.index not in wanted:
                    continue
                contributions.setdefault(a.index, []).append(f"({_rename(expr, names)})")
        for e in wanted:
            parts = contributions.get(e)
            kernel.body.append(f"d{e} = {' + '.join(parts) if parts else '0.0'}")


# -- the program ------------------------------------------------------------------------------------------
class Program:
    """Runs a captured graph: ``forward(arrays)`` and, from what it kept, ``backward``."""

    def __init__(self, graph):
        self.graph = graph
        self.units, self.group_of, self.consumers = _partition(graph)
        self.constants = {}
        self.kernels = {}
        self.differentiable = [n for n in graph.inputs if n.requires_grad]
        self.joint = None
        self._generate()

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
                fwd.reduces = True
                fwd.body.append(f"acc += v{g.terminal.args[0].index}")
            wanted = [e.index for e in writer.externals() if e.requires_grad]
            if only is not None and g.terminal is not None and g.terminal.requires_grad and \
                    _is_output(graph, g.terminal) and not outs:
                # one pass: the gradients for an incoming gradient of 1, in the forward loop
                seed = self._constant(g.terminal.params["scale"], g.terminal.dtype)
                writer.backward(fwd, {g.terminal.args[0].index: [seed]}, wanted)
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
        self.module = load_module("compiled", self.source)
        self.calls = {}
        for g, fwd, bwd in self.kernels.values():
            parallel = g.size >= PARALLEL_MIN
            self.calls[g.id] = (getattr(self.module, f"{fwd.name}_{'p' if parallel else 's'}"),
                                bwd and getattr(self.module, f"{bwd.name}_{'p' if parallel else 's'}"), parallel)

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
        parts = ["import math\nfrom math import inf, nan\nimport numpy as np\nfrom numba import njit, prange\n"]
        if used:
            parts.append(scalar.import_line(*sorted(used)))
        for (value, dtype), name in self.constants.items():
            parts.append(f"{name} = np.{dtype}({value!r})\n")
        for _, fwd, bwd in self.kernels.values():
            for k in (fwd, bwd):
                if k is not None:
                    size = k.group.size
                    parts.append("\n" + k.source(size >= PARALLEL_MIN))
        return "".join(parts)

    # -- running ---------------------------------------------------------------------------------------
    def _launch(self, kernel, parallel, args):
        if parallel:
            with parallel_lock:
                return kernel(*args)
        return kernel(*args)

    def forward(self, arrays, want_grad):
        """Values of the outputs, and what backward needs (``env``, the joint gradients)."""
        env = {n.index: a for n, a in zip(self.graph.inputs, arrays)}
        joint = None
        for unit in self.units:
            if hasattr(unit, "op"):
                env[unit.index] = _run_op(unit, env)
                continue
            g = unit
            fwd_kernel, _, parallel = self.calls[g.id]
            _, fwd, _ = self.kernels[g.id]
            args = []
            outputs = {}
            gins = {}
            for kind, key, _ in fwd.params:
                if kind == "in":
                    args.append(_operand(env[key.index], key.shape, g.shape))
                elif kind == "out":
                    outputs[key.index] = CPU.empty(g.shape, key.dtype.numpy)
                    args.append(outputs[key.index].reshape(-1))
                else:                          # joint gradient
                    gins[key] = CPU.empty(g.shape, self.graph.nodes[key].dtype.numpy)
                    args.append(gins[key].reshape(-1))
            if not want_grad and gins:
                return self._without_joint(arrays)
            acc = self._launch(fwd_kernel, parallel, args) if g.size else 0.0
            env.update(outputs)
            if g.terminal is not None:
                value = acc * g.terminal.params["scale"] if g.size else (math.nan if g.terminal.params["mean"] else 0.0)
                env[g.terminal.index] = CPU.reshape(CPU.scalar(value, g.terminal.dtype.numpy), g.terminal.shape)
            if gins:
                joint = gins
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
        for node, grad in pairs:
            adj.setdefault(node.index, []).append(grad)
        if joint is not None:
            grad = pairs[0][1]
            g = float(grad) if grad.size == 1 else None
            for e in list(joint):
                a = joint.pop(e)               # the gradient's only holder, so .grad may take it uncopied
                if g != 1.0:
                    a = CPU.launch("mul", (a, CPU.reshape(grad, ()) if grad.size == 1 else grad), a.shape, a.dtype)
                adj.setdefault(e, []).append(a)
        else:
            for unit in reversed(self.units):
                if hasattr(unit, "op"):
                    g = adj.pop(unit.index, None)
                    if g is not None:
                        for node, contribution in _op_backward(unit, env, _total(g, unit.shape, unit.dtype)):
                            adj.setdefault(node.index, []).append(contribution)
                    continue
                self._group_backward(unit, env, adj)
        result = []
        for n in self.differentiable:
            parts = adj.get(n.index)
            if parts:
                grad = _reduce_to(_total(parts, np.broadcast_shapes(n.shape, *(p.shape for p in parts)), n.dtype),
                                  n.shape)
            else:
                result.append(None)            # reached from no output that got a gradient
                continue
            result.append(CPU.contiguous(grad))
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
                args.append(_operand(_total(parts, g.shape, key.dtype) if parts else CPU.zeros(g.shape, key.dtype.numpy),
                                     g.shape, g.shape))
            elif kind == "scalar":
                parts = adj.pop(key.index, None)
                anything |= parts is not None
                if parts is not None:
                    seeded.add(key.args[0].index)
                args.append(float(_total(parts, (), g.dtype).reshape(())) if parts else 0.0)
            else:
                gins[key] = CPU.empty(g.shape, self.graph.nodes[key].dtype.numpy)
                args.append(gins[key].reshape(-1))
        if not anything:
            return
        if g.size:
            self._launch(bwd_kernel, parallel, args)
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
    """``array`` as a flat, C-contiguous operand of a loop over ``target``."""
    if _mode(shape, target) is None:
        out = CPU.empty(target, array.dtype)
        array = CPU.copy_into(out, CPU.reshape(array, shape), fresh_out=True)
    return CPU.reshape(CPU.contiguous(array), (-1,))


def build(graph):
    return Program(graph)
