"""Side effects inside a compiled function: ``loss.backward()``, ``zero_grad()``, ``.grad``
assignments, ``opt.step()`` and ``scheduler.step()``, so that a whole training step is one
compiled call.

Capture records them on the graph (``graph.effects``), in program order, instead of making
them. A call then runs the forward program and replays the effects, in that order, on the
real objects:

* ``Backward``: the program's backward from the loss (the gradients of the graph's inputs,
  derived at capture as for any compiled call), then each input the loss depends on gets its
  gradient as the engine's ``AccumulateGrad`` gives it: ``.grad`` None -> the gradient
  (uncopied when nothing else holds it), otherwise added in place; post-accumulate hooks
  run. An input with tensor hooks, or computed outside (a ``grad_fn``), goes through the
  eager engine, which carries the gradient on into the graph outside.
* ``ZeroGrad`` and ``SetGrad``: ``zero_grad``'s per-parameter reset (``set_to_none``) and
  ``p.grad = value``.
* ``Call``: a recorded method (``Optimizer.step``, ``LRScheduler.step``; see
  ``nbgrad._effects.recorded``) called again at every call: it reads the learning rate, the
  step counters and the state then, and updates the real parameter, gradient and state
  arrays with the optimizer's fused kernels (its target's ``optim.step``). Nothing of it is baked in.

While capturing, ``.grad`` of a tensor touched by these effects holds what it would hold at
that point (None, or a placeholder that breaks the graph when read: a gradient is not a
traced value); the real ``.grad`` is restored when capture ends. Reading an optimizer's
parameters in an op after its ``step`` breaks the graph (the forward program runs before
the effects).

The call returns its outputs without ``grad_fn``: the graph was used by the backward inside,
as eager's would be (eager's ``loss`` stays attached to that freed graph; values agree).
"""
from nbgrad.ops.targets import target_of

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .capture import Proxy, _break, _graph, _node

__all__ = ["hook", "backward", "restore", "check", "run"]


class _PendingGrad:
    """``.grad`` during capture after a backward or ``zero_grad(set_to_none=False)``."""
    __slots__ = ()

    def _read(self, *args, **kwargs):
        _break("reading .grad after loss.backward() or zero_grad() inside a compiled function "
               "(gradients are not traced values)")

    def __getattr__(self, name):
        self._read()

    __bool__ = __len__ = __iter__ = __array__ = __float__ = __index__ = __add__ = __radd__ = __mul__ = \
        __rmul__ = __sub__ = __rsub__ = __truediv__ = __neg__ = __getitem__ = _read


_PENDING = _PendingGrad()


def _virtual(graph, tensor, value):
    """Show ``value`` as ``tensor.grad`` until capture ends."""
    saved = graph.saved_grads
    if id(tensor) not in saved:
        saved[id(tensor)] = (tensor, "grad" in tensor.__dict__, tensor.__dict__.get("grad"))
    tensor.__dict__["grad"] = value


def restore(graph):
    """The real ``.grad`` of every tensor whose gradient capture showed otherwise."""
    for tensor, present, value in graph.saved_grads.values():
        if present:
            tensor.__dict__["grad"] = value
        else:
            tensor.__dict__.pop("grad", None)
    graph.saved_grads.clear()


# -- the effects ---------------------------------------------------------------------------------------------
class ZeroGrad:
    def __init__(self, tensor, set_to_none):
        self.tensor, self.set_to_none = tensor, set_to_none

    def apply(self, run):
        from ..nn.module import _zero_grad
        _zero_grad(self.tensor, self.set_to_none)

    def __repr__(self):
        return f"zero_grad(<{list(self.tensor.shape)}>, set_to_none={self.set_to_none})"


class SetGrad:
    def __init__(self, tensor, value):
        self.tensor, self.value = tensor, value

    def apply(self, run):
        self.tensor.grad = self.value

    def __repr__(self):
        return f"<{list(self.tensor.shape)}>.grad = {'None' if self.value is None else 'tensor'}"


class Call:
    def __init__(self, obj, name, args, kwargs):
        self.obj, self.name, self.args, self.kwargs = obj, name, args, kwargs

    def apply(self, run):
        getattr(self.obj, self.name)(*self.args, **self.kwargs)

    def __repr__(self):
        return f"{type(self.obj).__name__}.{self.name}()"


class Backward:
    """``loss.backward(gradient)``: the program's backward, delivered to the inputs it reaches."""

    def __init__(self, loss, gradient):
        self.loss, self.gradient = loss, gradient       # graph nodes (gradient: None or a lifted input)
        self.targets = []                               # (index among the program's differentiable inputs, among all inputs)

    def prepare(self, graph):
        reached, stack, seen = set(), [self.loss], set()
        while stack:
            n = stack.pop()
            if n.index in seen or not n.requires_grad:
                continue
            seen.add(n.index)
            if n.op == "input":
                reached.add(n.index)
            stack.extend(a for a in n.args if hasattr(a, "index"))
        differentiable = [n for n in graph.inputs if n.requires_grad]
        self.targets = [(k, graph.inputs.index(n)) for k, n in enumerate(differentiable) if n.index in reached]

    def apply(self, run):
        loss = self.loss
        target = run.program.target
        if self.gradient is None:
            seed = target.reshape(target.scalar(1.0, loss.dtype.numpy), loss.shape)
        else:
            seed = target.contiguous(run.env[self.gradient.index])
        grads = run.program.backward(run.env, run.joint, [(loss, seed)])
        run.joint = None
        seed = None
        tensors, later, later_grads = run.tensors, [], []
        with no_grad():
            for k, i in self.targets:
                t = tensors[i]
                grad = Tensor._wrap(grads[k])
                grads[k] = None
                if t.grad_fn is None and not t._hooks:
                    fresh = target_of(grad._data).is_private(grad._data)
                    t._grad_accumulator().apply(grad, fresh)
                else:
                    later.append(t)
                    later_grads.append(grad)
                grad = None
        if later:
            from ..autograd.engine import run_backward
            run_backward(later, later_grads, False, False)

    def __repr__(self):
        return f"%{self.loss.index}.backward()"


# -- capture -------------------------------------------------------------------------------------------------
def hook(kind, obj, *rest):
    """``EFFECTS.hook``: record an effect when a capture is running on this thread."""
    graph = _graph()
    if graph is None:
        return False
    if kind == "zero_grad":
        set_to_none, = rest
        graph.effects.append(ZeroGrad(obj, set_to_none))
        current = obj.__dict__.get("grad")
        if current is not None:
            _virtual(graph, obj, None if set_to_none else _PENDING)
    elif kind == "set_grad":
        value, = rest
        if value is not None and not isinstance(value, Tensor):
            _break("assigning a traced value (or other than a tensor or None) to .grad")
        graph.effects.append(SetGrad(obj, value))
        _virtual(graph, obj, value)
    else:
        name, args, kwargs = rest
        for value in list(args) + list(kwargs.values()):
            if isinstance(value, (Proxy, _PendingGrad)) or callable(value):
                _break(f"{type(obj).__name__}.{name} with a traced value or a closure")
        graph.effects.append(Call(obj, name, args, kwargs))
    graph.effects[-1].at = len(graph.nodes)
    return True


def backward(proxy, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """``Proxy.backward``: record the backward of a traced loss."""
    graph = proxy._graph
    node = proxy._node
    if create_graph or inputs is not None:
        _break("backward(create_graph=True) or backward(inputs=...) inside a compiled function")
    if any(isinstance(e, Backward) for e in graph.effects):
        _break("a second backward inside one compiled function")
    if not node.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if node.op == "input":
        _break("backward of a tensor the compiled function did not compute")
    if gradient is None:
        if node.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        seed = None
    else:
        if isinstance(gradient, Proxy):
            _break("backward(gradient=...) with a gradient computed in the compiled function")
        seed = _node(gradient, graph)
        if tuple(seed.shape) != tuple(node.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of torch.Size({list(seed.shape)}) and "
                               f"output[0] has a shape of torch.Size({list(node.shape)}).")
    effect = Backward(node, seed)
    effect.at = len(graph.nodes)
    graph.effects.append(effect)
    effect.prepare(graph)
    for index in (i for _, i in effect.targets):
        source = graph.inputs[index].source
        if source[0] == "lifted":
            tensor = next(t for t, n in graph.lifted.values() if n is graph.inputs[index])
            _virtual(graph, tensor, _PENDING)


def check(graph, fn):
    """Break the graph where replaying the effects after the forward program would differ from
    running the function: an op reading an optimizer's parameter after its step. Then note
    where ``fn`` names the objects whose methods it replays (``graph.bindings``)."""
    _bindings(graph, fn)
    graph.backward_inside = any(isinstance(e, Backward) for e in graph.effects)
    by_node = {n.index: t for t, n in graph.lifted.values()}
    for effect in graph.effects:
        groups = getattr(effect, "obj", None) and getattr(effect.obj, "param_groups", None)
        params = {id(p) for g in groups or () for p in g["params"]}
        for n in graph.nodes[effect.at:] if params else ():
            for a in n.args:
                t = by_node.get(getattr(a, "index", None))
                if t is not None and (id(t) in params or id(t._base) in params):       # a parameter or its view
                    _break(f"an op reads a parameter after {type(effect.obj).__name__}.{effect.name}() in the "
                           "compiled function")
        if isinstance(effect, Backward) and effect.loss.op == "pointwise" and \
                all(n.op in ("input", "pointwise", "sum") for n in graph.nodes):
            _break("backward of an elementwise value in a compiled function that is one fused loop")


def _bindings(graph, fn):
    """The globals ``fn``'s code names and its closure cells that hold an object whose method
    is replayed (the optimizer, the scheduler): a call where one of them names another object
    recaptures (Dynamo guards globals likewise). Objects reached otherwise are not guarded."""
    objects = {id(e.obj) for e in graph.effects if isinstance(e, Call)}
    graph.bindings = []
    fn = getattr(fn, "__func__", fn)
    code, scope = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    if code is None or not objects:
        return
    for name in code.co_names:
        if id(scope.get(name)) in objects:
            graph.bindings.append((scope, name, scope[name]))
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:                      # a cell not yet filled
            continue
        if id(value) in objects:
            graph.bindings.append((cell, None, value))


def bound(graph):
    """Whether the names of ``graph.bindings`` still name the same objects."""
    for where, name, obj in graph.bindings:
        if (where.get(name) if name is not None else where.cell_contents) is not obj:
            return False
    return True


# -- a call --------------------------------------------------------------------------------------------------
class _Run:
    __slots__ = ("program", "env", "joint", "tensors")


def run(entry, tensors):
    """One call of a compiled function with effects: the forward program, then the effects in
    order; the outputs, without ``grad_fn``."""
    graph, state = entry.graph, _Run()
    state.program, state.tensors = entry.program, tensors
    state.env, state.joint = entry.program.forward([t._data for t in tensors], True)
    for effect in graph.effects:
        effect.apply(state)
    env = state.env
    state.env = state.joint = None

    def value(v):
        if isinstance(v, (tuple, list)):
            return type(v)(value(x) for x in v)
        if not hasattr(v, "index"):
            return v
        if v.op == "input":
            return tensors[graph.inputs.index(v)]
        return Tensor._wrap(env[v.index])
    return value(graph.outputs)

