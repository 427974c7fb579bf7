"""``nbgrad.compile``: capture a function once per signature, fuse its forward and backward
into a few Numba kernels, and run those on later calls.

A call looks up the arguments' signature (each tensor's shape, dtype, device and requires_grad; the
values of numbers and strings; the grad mode). A miss captures the function on proxies
(``capture.py``: nothing is computed) and generates its program (``codegen.py``); a hit runs
the program on the arguments' data and on the tensors the function read from elsewhere
(parameters, closed-over tensors: read afresh each call). The result records one
``CompiledFunctionBackward`` node, whose backward is the generated backward program.

What cannot be captured (an op the compiler does not know yet, data-dependent Python) is a
graph break: the function then runs eagerly for that signature, after one warning naming
the op and the line (``fullgraph=True``: an error instead). After ``RECOMPILE_LIMIT``
signatures a function warns once and runs eagerly. ``NBGRAD_LOGS=graph,fusion,kernels``
prints what each capture made; ``compiled.explain(*args)`` returns it.
"""
import functools
import os
import threading
import warnings
import weakref

from ..autograd.grad_mode import enable_grad, is_grad_enabled
from ..autograd.graph import Node, _modified_message
from ..tensor import Tensor, record
from . import effects, resume
from .capture import GraphBreak, capture
from .capture import Node as _GraphNode
from .codegen import Program

__all__ = ["compile", "reset", "GraphBreak", "CompiledFunction", "RECOMPILE_LIMIT"]

RECOMPILE_LIMIT = 8
_EAGER = object()
_compiled = weakref.WeakSet()


def reset():
    """Forget every captured graph (as ``torch.compiler.reset``); kernels stay cached on disk."""
    for c in list(_compiled):
        c._reset()


def _signature(value):
    if isinstance(value, Tensor):
        return (value._data.shape, value._data.dtype, value._requires_grad or value.grad_fn is not None,
                type(value._data))               # the device: its target's array type
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(_signature(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return ("V", type(value).__name__, value)
    return ("O", id(value))


def _tensors(value, out):
    if isinstance(value, Tensor):
        out.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _tensors(v, out)
    return out


def _log(kinds):
    wanted = {k.strip() for k in os.environ.get("NBGRAD_LOGS", "").split(",") if k.strip()}
    return wanted & set(kinds)


class _Entry:
    """A captured graph and its program, for one signature."""

    def __init__(self, graph, program):
        self.graph, self.program = graph, program
        self.lifted = [t for t, _ in graph.lifted.values()]
        self.lifted_signature = [_signature(t) for t in self.lifted]
        # the inputs backward may read: operands of nodes that need gradients
        used = {a.index for n in graph.nodes if n.requires_grad for a in n.args if hasattr(a, "index")}
        self.read = {k for k, n in enumerate(graph.inputs) if n.index in used}
        self.read_outputs = used | {n.index for n in graph.nodes if n.op in ("softmax", "max") and n.requires_grad}
        # the outputs that require grad, each once: the outputs of the call's one node
        self.differentiable = list({id(n): n for n in _output_nodes(graph.outputs)
                                    if n.requires_grad and n.op != "input"}.values())
        # worked out once, so that a call only fills in arrays
        self.grad_inputs = [i for i, n in enumerate(graph.inputs) if n.requires_grad]
        self.output_meta = tuple((n.shape, n.dtype) for n in self.differentiable)
        out = graph.outputs
        self.single = out if isinstance(out, _GraphNode) and out.op != "input" else None   # one computed tensor

    def valid(self):
        return all(_signature(t) == s for t, s in zip(self.lifted, self.lifted_signature)) and \
            (not self.graph.effects or effects.bound(self.graph))

    def describe(self):
        p = self.program
        groups = [repr(u) for u in p.units if not isinstance(u, _GraphNode)]     # fusion groups, fused steps
        return {"graph": str(self.graph), "fusion": "\n".join(groups) + (
            f"\njoint forward-backward pass: group {p.joint.id}" if p.joint is not None else ""),
            "kernels": p.source}


def _output_nodes(out):
    if isinstance(out, (tuple, list)):
        return [n for o in out for n in _output_nodes(o)]
    return [out] if hasattr(out, "index") else []


class CompiledFunctionBackward(Node):
    """The backward of a compiled call: the generated backward program (or, when it is
    itself recorded for ``create_graph``, the function run eagerly again)."""
    materialize_grads = False          # the engine would make missing output gradients on the CPU

    def backward(self, *grads):
        for k, (t, version) in enumerate(zip(self.tensors, self.versions)):
            if t._version != version and (k in self.entry.read or k >= len(self.entry.graph.inputs)):
                raise RuntimeError(_modified_message(t, t._version, version, t.grad_fn))
        if is_grad_enabled():
            return self._eager(grads)
        program = self.entry.program
        if self.joint is None and program.joint is not None:       # a second backward (retain_graph)
            self.env, self.joint = program.forward(self.arrays, True)
        joint, self.joint = self.joint, None
        pairs = [(n, g._data) for n, g in zip(self.entry.differentiable, grads) if g is not None]
        return tuple(None if g is None else Tensor._wrap(g) for g in program.backward(self.env, joint, pairs))

    def _eager(self, grads):
        if getattr(self.entry, "prefix", False):
            raise RuntimeError("nbgrad.compile: create_graph=True through the compiled part of a function with a "
                               "graph break is not supported; call the function uncompiled")
        _warn_once(("create_graph", id(self.fn)),
                   "nbgrad.compile: a backward recorded for create_graph runs the compiled function eagerly")
        from .. import autograd
        inputs = [t for t, n in zip(self.tensors, self.entry.graph.inputs) if n.requires_grad]
        with enable_grad():
            out = self.fn(*self.args, **self.kwargs)
        outs = list({id(o): o for o in _tensors(out, []) if o.requires_grad and o.grad_fn is not None}.values())
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        return autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], create_graph=True,
                             allow_unused=True)


_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)


class CompiledFunction:
    """``fn`` compiled: call it as ``fn``."""

    def __init__(self, fn, fullgraph=False, dynamic=False):
        functools.update_wrapper(self, fn)
        self._fn, self._fullgraph, self._dynamic = fn, fullgraph, dynamic
        self._lock = threading.Lock()
        self._reset()
        _compiled.add(self)

    def _reset(self):
        self._entries = {}
        self._prefixes = {}                    # graph text -> program, of the parts before graph breaks
        self._captures = 0

    def __get__(self, obj, objtype=None):
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        key = (tuple([_signature(a) for a in args]), _signature(tuple(kwargs.items())) if kwargs else (),
               is_grad_enabled())
        entry = self._entries.get(key)
        if entry is None or (entry is not _EAGER and not entry.valid()):
            entry = self._compile(key, args, kwargs)
        if entry is _EAGER:
            return self._fn(*args, **kwargs)
        if isinstance(entry, resume.Breaks):
            return resume.call(self, _Entry, args, kwargs)
        return self._run(entry, args, kwargs)

    def _compile(self, key, args, kwargs):
        with self._lock:
            if self._captures >= RECOMPILE_LIMIT:
                _warn_once(("limit", id(self)), f"nbgrad.compile: {self.__name__} was recompiled "
                           f"{RECOMPILE_LIMIT} times; running it eagerly from now on")
                self._entries[key] = _EAGER
                return _EAGER
            self._captures += 1
            try:
                graph = capture(self._fn, args, kwargs)
                entry = _Entry(graph, Program(graph))
            except GraphBreak as error:
                if self._fullgraph:
                    raise
                resumable = getattr(error, "resumable", False)
                _warn_once(("break", id(self), str(error)), f"nbgrad.compile: graph break in {self.__name__}: "
                           f"{error}; it runs eagerly {'from there' if resumable else 'for these arguments'}")
                entry = resume.Breaks() if resumable else _EAGER
            except Exception as error:          # an op that cannot take a traced value (or the user's error)
                if self._fullgraph:
                    raise GraphBreak(f"{type(error).__name__}: {error}") from error
                _warn_once(("break", id(self), str(error)),
                           f"nbgrad.compile: graph break in {self.__name__} ({type(error).__name__}: {error}); "
                           "it runs eagerly")
                entry = _EAGER
            if isinstance(entry, _Entry):
                for kind, text in entry.describe().items():
                    if _log([kind]):
                        print(f"[nbgrad.compile {kind}] {self.__name__}\n{text}")
            self._entries[key] = entry
            return entry

    def _run(self, entry, args, kwargs):
        tensors = _tensors(args, [])
        if kwargs:
            _tensors(list(kwargs.values()), tensors)
        if entry.lifted:
            tensors += entry.lifted
        if entry.graph.effects and entry.graph.backward_inside:        # a training step (effects.py)
            return effects.run(entry, tensors)
        arrays = [t._data for t in tensors]
        env, joint = entry.program.forward(arrays, bool(entry.differentiable))
        single = entry.single
        if single is not None and not entry.graph.effects:      # the common case: one computed tensor
            if not entry.differentiable:
                return Tensor._wrap(env[single.index])
            node = []
            out = self._output(entry, node, single, env, joint, arrays, tensors, args, kwargs)
            if node and single.index in entry.read_outputs:     # backward reads its memory: see below
                node[0].tensors, node[0].versions = node[0].tensors + [out], node[0].versions + [out._version]
            return out
        nodes = {}
        node = []

        def value(v):
            if isinstance(v, (tuple, list)):
                return type(v)(value(x) for x in v)
            if not hasattr(v, "index"):
                return v
            if v.op == "input":
                return tensors[entry.graph.inputs.index(v)]
            if v.index in nodes:
                return nodes[v.index]
            if v in entry.differentiable:
                out = nodes[v.index] = self._output(entry, node, v, env, joint, arrays, tensors, args, kwargs)
                return out
            nodes[v.index] = Tensor._wrap(env[v.index])
            return nodes[v.index]
        result = value(entry.graph.outputs)
        if node:                               # outputs whose memory backward reads: changed in place, an error
            node[0].tensors = node[0].tensors + [t for i, t in nodes.items() if i in entry.read_outputs]
            node[0].versions = node[0].versions + [t._version for i, t in nodes.items() if i in entry.read_outputs]
        for effect in entry.graph.effects:      # zero_grad, optimizer steps: the backward comes later
            effect.apply(None)
        return result

    def _output(self, entry, node, v, env, joint, arrays, tensors, args, kwargs):
        """Output ``v`` of the call's one recorded node (made by its first differentiable output)."""
        k = entry.differentiable.index(v)
        if node:
            out = Tensor._wrap(env[v.index])
            out.grad_fn, out._output_nr = node[0], k
            return out
        out = record(CompiledFunctionBackward, env[v.index], [tensors[i] for i in entry.grad_inputs],
                     entry=entry, env=env, joint=joint, arrays=arrays, tensors=tensors,
                     versions=[t._version for t in tensors], fn=self._fn, args=args, kwargs=kwargs,
                     num_outputs=len(entry.differentiable), _output_meta=entry.output_meta)
        if out.grad_fn is not None:
            node.append(out.grad_fn)
            out._output_nr = k
        return out

    def explain(self, *args, **kwargs):
        """What a call with these arguments captures: the graph, the fusion groups, the kernels'
        source, or the graph break (as ``torch._dynamo.explain``)."""
        try:
            graph = capture(self._fn, args, kwargs)
            parts = _Entry(graph, Program(graph)).describe()
        except GraphBreak as error:
            return f"graph break: {error}"
        return "\n\n".join(f"== {k} ==\n{v}" for k, v in parts.items())


class CompiledModule:
    """A module whose calls go through a compiled ``forward``; its attributes are the module's."""

    def __init__(self, module, **options):
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_call", CompiledFunction(module.forward, **options))

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._orig_mod, name)

    def __setattr__(self, name, value):
        setattr(self._orig_mod, name, value)

    def __repr__(self):
        return f"CompiledModule({self._orig_mod!r})"


def compile(model=None, *, fullgraph=False, dynamic=False, backend="nbgrad", mode=None, options=None,
            disable=False):
    """``torch.compile``'s signature: a compiled function or module, or a decorator."""
    if backend not in ("nbgrad", "inductor", "eager"):
        raise ValueError(f"nbgrad.compile: unknown backend {backend!r}: nbgrad compiles with its own")
    if model is None:
        return lambda fn: compile(fn, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                  options=options, disable=disable)
    if disable or backend == "eager":
        return model
    from ..nn import Module
    if isinstance(model, Module):
        return CompiledModule(model, fullgraph=fullgraph, dynamic=dynamic)
    if not callable(model):
        raise RuntimeError("torch.compile: model must be callable")
    return CompiledFunction(model, fullgraph=fullgraph, dynamic=dynamic)
