"""Capture: run a function once on abstract values, recording its ops as a graph.

The traced function sees ``Proxy`` objects where it was given tensors: they carry a shape, a
dtype, ``requires_grad`` and the device (one per graph: tensors on two devices break it), and no
data, so capturing computes nothing and compiles no kernel (JAX's abstract values, PyTorch's fake tensors). Each op a proxy takes part in
appends a node: the op table's pointwise records (by their name, so that code generation
reads their forward and derivative expressions), sums and means, matrix products,
transposes and reshapes. A real tensor met on the way (a module's parameter, a closed-over
tensor) becomes an input of the graph, read afresh at every call.

Anything else (an op the compiler does not know, data-dependent Python such as ``.item()``,
``bool(t)``, ``print``) raises ``GraphBreak``, naming the op and the line of user code.
"""
import functools
import math
import os
import threading
import traceback
import types
import weakref


from nbgrad.ops.table import TABLE

from nbgrad.ops.targets import CPU

from .. import _dtype
from .._effects import EFFECTS
from ..autograd.grad_mode import is_grad_enabled, no_grad, set_grad_enabled
from ..functional import pointwise
from ..functional.indexing import _check_fill
from ..functional.reduction import _dims, _one_dim, return_types
from ..tensor import Size, Tensor, _wrap_dim, device

__all__ = ["GraphBreak", "Graph", "Node", "Proxy", "capture"]

# nbgrad's own code, and its op library (installed as nbgrad.ops; a directory of its own in a checkout)
_PACKAGE = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            os.path.dirname(os.path.abspath(__import__("nbgrad.ops", fromlist=["_cache"]).__file__)))


class GraphBreak(RuntimeError):
    """What the compiler could not capture, and where in user code."""


def _user_line():
    """'file:line: code' of the innermost frame outside nbgrad."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno}: {frame.line}"
    return "<unknown>"


class _Resumed(BaseException):
    """Raised by a graph break in resume mode once the proxies are real tensors: the op that
    broke (the outermost traced entry, ``_entry``) runs eagerly instead. A BaseException,
    so that no ``except Exception`` of eager code in between takes it."""


def _break(what):
    message = f"{what} (at {_user_line()})"
    graph = _graph()
    resumable = graph is not None and getattr(_state, "depth", 0) > 0
    if resumable and getattr(_state, "resume", None) is not None:
        materialize(graph, message)
        raise _Resumed()
    error = GraphBreak(message)
    error.resumable = resumable                # in an op on proxies, which can then run eagerly
    raise error


def _entry(traced, eager):
    """``traced`` (an op on proxies), or when a graph break turned the proxies into tensors
    during it, ``eager`` with the same arguments (the outermost traced op only: those it
    called are part of it)."""
    @functools.wraps(traced)
    def op(*args, **kwargs):
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            return traced(*args, **kwargs)
        except _Resumed:
            if _state.depth > 1:
                raise
            return eager(*args, **kwargs)
        finally:
            _state.depth -= 1
    return op


def materialize(graph, message=None):
    """Graph break "from there": run the graph captured so far on the real inputs (its
    outputs: the values of the proxies still alive) and turn each of those proxies, in place,
    into the real tensor it stands for; tracing stops and the function goes on eagerly."""
    live = [p for p in (r() for r in graph.proxies) if p is not None and type(p) is Proxy]
    # views are made again eagerly from their base (so that they are views, as eager's are);
    # the program computes the other values
    wanted, views = {}, {}
    for p in live:
        n = p._node
        while n.op in _VIEWS:
            views[n.index] = n
            n = n.args[0]
        wanted[n.index] = n
    nodes = [n for n in wanted.values() if n.op != "input"]
    graph.outputs = tuple(nodes)
    _state.graph = None
    pointwise.TRACING.ops.clear()
    _prune(graph)
    with set_grad_enabled(graph.grad_enabled):  # as at the call, whatever eager code broke
        values = dict(zip((n.index for n in nodes), _state.resume(graph, message)))
        values.update({i: graph.arguments[i] for i, n in wanted.items() if n.op == "input"})
        for i in sorted(views):
            values[i] = _eager_view(views[i], values[views[i].args[0].index])
    for p in live:
        n = p._node
        t = graph.arguments[n.index] if n.op == "input" else values[n.index]
        # an argument's stand-in shares its data, version, history and, for a leaf, its gradient
        # accumulator (kept alive here), so in-place changes and gradients reach the argument
        keep = t._grad_accumulator() if n.op == "input" and t.grad_fn is None and t.requires_grad else None
        p.__dict__.clear()
        p.__class__ = Tensor
        p._data, p._version_counter, p._requires_grad, p.grad_fn = t._data, t._version_counter, t._requires_grad, \
            t.grad_fn
        p.__dict__.update(t.__dict__)
        if keep is not None:
            p.__dict__["_kept_accumulator"] = keep
        if n.op == "input":
            graph.stand_ins.append((p, t))


def _eager_view(node, base):
    """The view ``node`` made eagerly of the real tensor ``base`` (an input's: the input)."""
    if node.op == "view":
        return base[node.params["key"]]
    if node.op == "permute":
        return base.permute(node.params["perm"])
    if node.op == "expand":
        return base.expand(node.shape)
    return base.reshape(node.shape)


def _sync(graph):
    """An argument's stand-in that an eager in-place op gave a new history: the argument
    itself gets it, as it would have eagerly."""
    for p, arg in graph.stand_ins:
        if p.grad_fn is not arg.grad_fn or p._requires_grad != arg._requires_grad:
            arg.grad_fn, arg._requires_grad = p.grad_fn, p._requires_grad
            for name in ("_output_nr", "_base", "_view_fn"):
                if name in p.__dict__:
                    setattr(arg, name, p.__dict__[name])


class Node:
    """One value of the graph: ``op`` over ``args`` (nodes, or numbers for constants)."""
    __slots__ = ("op", "args", "params", "shape", "dtype", "requires_grad", "index", "source")

    def __init__(self, op, args, shape, dtype, requires_grad, params=None, source=None):
        self.op, self.args, self.params = op, tuple(args), params or {}
        self.shape, self.dtype, self.requires_grad, self.source = tuple(shape), dtype, requires_grad, source

    @property
    def size(self):
        return math.prod(self.shape)

    def __repr__(self):
        args = ", ".join(f"%{a.index}" if isinstance(a, Node) else repr(a) for a in self.args)
        params = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"%{self.index} = {self.op}({args}{params}) : {self.dtype.name}{list(self.shape)}"


class Graph:
    def __init__(self):
        self.nodes = []
        self.inputs = []              # input nodes, in order: the arguments', then lifted tensors'
        self.lifted = {}              # id(tensor) -> (tensor, node)
        self.outputs = None           # the returned structure, with nodes for proxies
        self.device = device("cpu")   # the device of the tensors it reads (one: see ``input``)
        self.effects = []             # backward, zero_grad, optimizer steps, in program order (effects.py)
        self.saved_grads = {}         # the real .grad of tensors whose effects capture showed (effects.py)
        self.proxies = []             # weak references to every proxy made, in order
        self.grad_enabled = is_grad_enabled()
        self.stand_ins = []           # (materialized proxy of an input, the input tensor)
        self.arguments = {}           # input node index -> the tensor (argument or lifted)

    def add(self, node):
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def input(self, tensor, source):
        if not self.inputs:
            self.device = tensor.device
        elif tensor.device != self.device:
            _break(f"tensors on two devices ({self.device} and {tensor.device}) in one compiled graph")
        node = self.add(Node("input", (), tensor.shape, tensor.dtype,
                             tensor.requires_grad and is_grad_enabled(), source=source))
        self.inputs.append(node)
        return node

    def lift(self, tensor):
        """A real tensor used by a traced op: an input read at every call."""
        entry = self.lifted.get(id(tensor))
        if entry is None:
            if tensor.grad_fn is not None and tensor._base is None:
                _break("a tensor computed outside the compiled function's captured ops is used "
                       f"({type(tensor.grad_fn).__name__}); pass it as an argument")
            entry = self.lifted[id(tensor)] = (tensor, self.input(tensor, ("lifted", len(self.lifted))))
            self.arguments[entry[1].index] = tensor
        return entry[1]

    def __str__(self):
        lines = [repr(n) for n in self.nodes]
        lines += [f"then {e!r}" for e in self.effects]          # made after the forward, in this order
        lines.append(f"return {_describe(self.outputs)}")
        return "\n".join(lines)


def _describe(out):
    if isinstance(out, Node):
        return f"%{out.index}"
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(_describe(o) for o in out) + ")"
    return repr(out)


_state = threading.local()


def _graph():
    return getattr(_state, "graph", None)


def _node(x, graph):
    if isinstance(x, Proxy):
        if x._graph is not graph:
            _break("a traced value escaped its capture")
        return x._node
    if isinstance(x, Tensor):
        return graph.lift(x)
    return x


def _float(dtypes, floating):
    """The dtype of a pointwise result: floating tensors only (the compiler's scope)."""
    result = None
    for d in dtypes:
        if not d.is_floating_point:
            _break(f"an op on {d} tensors (only floating tensors are compiled)")
        result = d if result is None or d.itemsize > result.itemsize else result
    return result


def _promoted(operands):
    """PyTorch's promotion of floating operands: tensors with dims outrank 0-d ones (numbers
    cannot raise a floating dtype)."""
    dim = zero = None
    for n in operands:
        if isinstance(n, Node):
            if n.shape:
                dim = n.dtype if dim is None else _dtype.promote_types(dim, n.dtype)
            else:
                zero = n.dtype if zero is None else _dtype.promote_types(zero, n.dtype)
    return _dtype._combine(dim, zero)


_COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}        # floating operands, a bool result
_LOGICAL = {"logical_and", "logical_or", "logical_xor", "logical_not"}     # bool operands and result


def pointwise_op(name, operands):
    """Trace op-table record ``name`` over ``operands`` (its args, then its params).

    Floating operands make a floating result; comparisons make a bool one (computed in their
    operands' dtype, kept as the node's ``compute``), the logical ops take and make bools,
    and ``where`` takes a bool condition: bool values never require grad."""
    graph = _graph()
    record = TABLE[name]
    nodes = [_node(x, graph) for x in operands]
    for n in nodes:
        if not isinstance(n, (Node, int, float)) or isinstance(n, bool):
            _break(f"{name} with an operand of type {type(n).__name__}")
    args = nodes[:len(record.args)]
    params = {"record": name}
    if name == "where":
        if not isinstance(args[0], Node) or args[0].dtype is not _dtype.bool:
            raise RuntimeError("where expected condition to be a boolean tensor")
        values = [t.dtype for t in args[1:] if isinstance(t, Node)]
        if not values:
            _break("where with two numbers")
        _float(values, True)
        dtype = _promoted(args[1:])
    elif name in _LOGICAL:
        if any(isinstance(t, Node) and t.dtype is not _dtype.bool for t in args) or \
                not any(isinstance(t, Node) for t in args):
            _break(f"{name} of other than bool tensors")
        dtype = params["compute"] = _dtype.bool
    else:
        _float([t.dtype for t in args if isinstance(t, Node)], record.result == "float")
        dtype = _promoted(args)
        if name in _COMPARISONS:
            params["compute"], dtype = dtype, _dtype.bool
    tensors = [t for t in args if isinstance(t, Node)]
    shape = pointwise.broadcast_shapes(*(t.shape for t in tensors))
    requires_grad = bool(record.grads) and is_grad_enabled() and any(t.requires_grad for t in tensors)
    return Proxy(graph.add(Node("pointwise", nodes, shape, dtype, requires_grad, params)), graph)


def _trace_hook(name, operands):
    """Called by the generated pointwise functions (``functional.pointwise``) on their general
    path, once a capture has run: an op whose operands include a proxy is traced instead of
    computed (``nbgrad.tanh(proxy)``, ``F.relu(proxy)``, ``tensor * proxy``)."""
    if _graph() is None or not any(isinstance(x, Proxy) for x in operands):
        return None
    return _traced_pointwise(name, operands)


def _method_table():
    """Proxy methods from the op table: every alias of every record with a function."""
    methods = {}
    for name, record in TABLE.items():
        if name in pointwise.RUN:
            for alias in record.api:
                methods[alias] = name
    return methods


class _NoData:
    """A proxy's ``_data``: no array. Eager code that reads it is running an op the compiler
    does not know on a traced value: a graph break that names the op."""
    __slots__ = ()

    def __getattr__(self, name):
        _break(f"{_eager_op()} is not supported by nbgrad.compile yet")

    @property
    def __class__(self):                       # isinstance(data, ndarray) asks it
        _break(f"{_eager_op()} is not supported by nbgrad.compile yet")


_NO_DATA = _NoData()


class Proxy(Tensor):
    """A traced tensor: shape, dtype, requires_grad and (its graph's) device, no data.

    A Tensor subclass adding no slots, so that a graph break can turn it into the real tensor
    it stands for, in place (``materialize``); until then its node and graph are in its
    ``__dict__``, and its Tensor slots are unset (reading one is a graph break)."""
    __slots__ = ()
    __array_priority__ = 2000
    _traced = True
    _data = property(lambda self: _NO_DATA)

    def __init__(self, node, graph):
        self._node, self._graph = node, graph
        graph.proxies.append(weakref.ref(self))

    shape = property(lambda self: Size(self._node.shape))
    dtype = property(lambda self: self._node.dtype)
    ndim = property(lambda self: len(self._node.shape))
    requires_grad = property(lambda self: self._node.requires_grad)
    is_leaf = property(lambda self: self._node.op == "input" or not self._node.requires_grad)
    device = property(lambda self: self._graph.device)
    is_floating_point = lambda self: self._node.dtype.is_floating_point     # noqa: E731

    def dim(self):
        return len(self._node.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self._node.shape[dim]

    def numel(self):
        return self._node.size

    def __repr__(self):
        return f"Proxy({self._node!r})"

    def _new(self, op, args, shape, dtype=None, requires_grad=None, **params):
        n = self._node
        node = Node(op, args, shape, n.dtype if dtype is None else dtype,
                    n.requires_grad if requires_grad is None else requires_grad, params)
        return Proxy(self._graph.add(node), self._graph)

    # -- data-dependent Python: graph breaks --------------------------------------------------------
    def _data_dependent(self, *args, **kwargs):
        _break("data-dependent Python on a traced tensor (.item(), bool(), .numpy(), print...)")

    __bool__ = __float__ = __int__ = __index__ = __str__ = __format__ = __array__ = __iter__ = __len__ = \
        item = tolist = numpy = _data_dependent

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from . import effects
        effects.backward(self, gradient, retain_graph, create_graph, inputs)
    __hash__ = object.__hash__

    def __getattr__(self, name):
        if name.startswith("_"):                 # an eager op reading a tensor's internals: name the op
            _break(f"{_eager_op()} is not supported by nbgrad.compile yet")
        _break(f"Tensor.{name} is not supported by nbgrad.compile yet")

    # -- in-place ops on values computed in the function: the proxy takes the new node ------------------
    def _inplace(self, op, *args, **kwargs):
        """``op`` in place on a value computed in the function: the proxy takes the new node."""
        n = self._node
        if n.op == "input":
            _break(f"in-place {op}_ on an argument or a tensor read by the compiled function")
        if n.op in _VIEWS or any(m.op in _VIEWS and m.args[0] is n for m in self._graph.nodes):
            _break(f"in-place {op}_ on a view, or on a tensor that has views")
        new = getattr(self, op)(*args, **kwargs) if hasattr(Proxy, op) else self._op(op, *args, **kwargs)
        if new.shape != self.shape:
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(new.shape)}")
        if new.dtype is not self.dtype:
            if not self.dtype.is_floating_point:
                raise RuntimeError(f"result type {new.dtype.name.capitalize()} can't be cast to the desired "
                                   f"output type {self.dtype.name.capitalize()}")
            new = new.to(self.dtype)
        self._node = new._node
        return self

    def __iadd__(self, other):
        return self._inplace("add", other)

    def __isub__(self, other):
        return self._inplace("sub", other)

    def __imul__(self, other):
        return self._inplace("mul", other)

    def __itruediv__(self, other):
        return self._inplace("div", other)

    def __ipow__(self, other):
        return self._inplace("pow", other)

    # -- pointwise: the op table ---------------------------------------------------------------------
    def _op(self, name, *others, **params):
        record = TABLE[name]
        values = [params.get(p, default) for p, default in record.params]
        return pointwise_op(name, (self, *others, *values))

    def __add__(self, other, alpha=1):
        return self._op("add", other) if alpha == 1 else self._op("add_scaled", other, alpha=alpha)

    __radd__ = add = __add__

    def __sub__(self, other, alpha=1):
        return self._op("sub", other) if alpha == 1 else self._op("add_scaled", other, alpha=-alpha)

    sub = __sub__

    def __rsub__(self, other):
        return pointwise_op("sub", (other, self))

    def __truediv__(self, other):
        return self._op("div", other)

    div = __truediv__

    def __rtruediv__(self, other):
        return pointwise_op("div", (other, self))

    def __pow__(self, exponent):
        return self._op("pow", exponent)

    pow = __pow__

    def __rpow__(self, base):
        return pointwise_op("pow", (base, self))

    def __rmul__(self, other):
        return pointwise_op("mul", (other, self))

    def __pos__(self):
        return self

    def square(self):
        return self._op("pow", 2)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if not self.dtype.is_floating_point:
            _break("clamp of a non-floating tensor")
        return self._op("clamp", -math.inf if min is None else min, math.inf if max is None else max)

    clip = clamp

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    # -- comparisons (bool results, no gradient), logic, where ----------------------------------------
    def __eq__(self, other):
        return self._op("eq", other)

    def __ne__(self, other):
        return self._op("ne", other)

    def __lt__(self, other):
        return self._op("lt", other)

    def __le__(self, other):
        return self._op("le", other)

    def __gt__(self, other):
        return self._op("gt", other)

    def __ge__(self, other):
        return self._op("ge", other)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__
    less, less_equal, greater, greater_equal = lt, le, gt, ge

    def logical_and(self, other):
        return self._op("logical_and", other)

    def logical_or(self, other):
        return self._op("logical_or", other)

    def logical_xor(self, other):
        return self._op("logical_xor", other)

    def logical_not(self):
        return self._op("logical_not")

    def _bool_only(self, op):
        if self.dtype is not _dtype.bool:
            _break(f"{op} of a {self.dtype} tensor (only bool tensors' logic is compiled)")

    def __and__(self, other):
        self._bool_only("&")
        return self.logical_and(other)

    def __or__(self, other):
        self._bool_only("|")
        return self.logical_or(other)

    def __xor__(self, other):
        self._bool_only("^")
        return self.logical_xor(other)

    def __invert__(self):
        self._bool_only("~")
        return self.logical_not()

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def where(self, condition, other):
        return pointwise_op("where", (condition, self, other))

    def masked_fill(self, mask, value):
        _check_fill(mask, value)
        if isinstance(value, (Tensor, Proxy)):
            if value.ndim != 0:
                raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                                   f"{value.ndim} dimension(s).")
            if value.dtype is not self.dtype:
                _break("masked_fill with a value tensor of another dtype")
        return pointwise_op("where", (mask, value, self))

    # -- dtypes ------------------------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False):
        for a in args:
            if isinstance(a, _dtype.dtype):
                dtype = a
            elif isinstance(a, (Tensor, Proxy)):
                dtype = a.dtype
            elif str(a) != "cpu":
                _break(f"to({a!r})")
        if device is not None and str(device) != "cpu":
            _break(f"to(device={device!r})")
        if dtype is None or dtype is self.dtype:
            return self
        if dtype not in (_dtype.float32, _dtype.float64) or self.dtype not in (_dtype.float32, _dtype.float64,
                                                                                _dtype.bool):
            _break(f"a cast from {self.dtype} to {dtype} (only to float32 and float64 are compiled)")
        return self._new("cast", (self._node,), self._node.shape, dtype,
                         self._node.requires_grad and self.dtype.is_floating_point)

    def float(self):
        return self.to(_dtype.float32)

    def double(self):
        return self.to(_dtype.float64)

    def type_as(self, other):
        return self.to(other.dtype)

    def detach(self):
        return self._new("cast", (self._node,), self._node.shape, requires_grad=False)

    def contiguous(self, memory_format=None):
        return self

    # -- reductions, products, shapes -------------------------------------------------------------------
    def _reduce(self, op, dim, keepdim, dtype):
        if dtype is not None:
            return self.to(dtype)._reduce(op, dim, keepdim, None)
        if not self.dtype.is_floating_point:
            _break(f"{op} of a {self.dtype} tensor (only floating sums are compiled; give dtype=)")
        ndim = self.ndim
        if dim is None or dim == () or dim == []:
            dims = tuple(range(ndim))
        else:
            dims = _dims(dim, ndim, op)
        shape = self._node.shape
        keep = tuple(1 if d in dims else n for d, n in enumerate(shape))
        out = keep if keepdim else tuple(n for d, n in enumerate(shape) if d not in dims)
        count = math.prod(shape[d] for d in dims)
        scale = 1.0 if op == "sum" else (1.0 / count if count else math.nan)
        return self._new("sum", (self._node,), out, dims=dims, keep=keep, scale=scale, mean=op == "mean")

    def sum(self, dim=None, keepdim=False, *, dtype=None):
        return self._reduce("sum", dim, keepdim, dtype)

    def mean(self, dim=None, keepdim=False, *, dtype=None):
        return self._reduce("mean", dim, keepdim, dtype)

    def _extreme(self, name, dims, keepdim, smallest, dim=None, nan_too=False):
        """The max/min over ``dims`` (one ``dim``: with its indices)."""
        if not self.dtype.is_floating_point:
            _break(f"{name} of a {self.dtype} tensor")
        shape = self._node.shape
        if not self._node.size:
            _break(f"{name} of an empty tensor")
        keep = tuple(1 if d in dims else n for d, n in enumerate(shape))
        out = keep if keepdim else tuple(n for d, n in enumerate(shape) if d not in dims)
        return self._new("max", (self._node,), out, dims=dims, keep=keep, smallest=smallest, dim=dim,
                         nan_too=nan_too)

    def amax(self, dim=(), keepdim=False):
        return self._extreme("amax", _dims(dim, self.ndim, "amax"), keepdim, False)

    def amin(self, dim=(), keepdim=False):
        return self._extreme("amin", _dims(dim, self.ndim, "amin"), keepdim, True)

    def _max_or_min(self, name, dim, keepdim, other):
        smallest = name == "min"
        if isinstance(dim, (Tensor, Proxy)) or other is not None:
            return self._op("minimum" if smallest else "maximum", dim if other is None else other)
        if dim is None:
            return self._extreme(name, tuple(range(self.ndim)), False, smallest, nan_too=True)
        d = _one_dim(dim, self.ndim, name)
        values = self._extreme(name, (d,) if self.ndim else (), keepdim, smallest, dim=d)
        indices = values._new("indices", (values._node,), values._node.shape, _dtype.int64, False)
        return getattr(return_types, name)(values, indices)

    def max(self, dim=None, keepdim=False, *, other=None):
        return self._max_or_min("max", dim, keepdim, other)

    def min(self, dim=None, keepdim=False, *, other=None):
        return self._max_or_min("min", dim, keepdim, other)

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(other, self)

    matmul = mm = __matmul__

    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        out = _matmul(mat1, mat2)
        out = out if alpha == 1 else out * alpha
        return out + (self if beta == 1 else self * beta) if beta != 0 else out

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        if self.ndim < 2:                      # a view, as eager's
            return self._new("permute", (self._node,), self._node.shape, perm=tuple(range(self.ndim)))
        return self.transpose(0, 1)

    T = property(t)

    def transpose(self, d0, d1):
        n = self._node
        perm = list(range(len(n.shape)))
        if perm:
            d0, d1 = _wrap_dim(d0, len(perm)), _wrap_dim(d1, len(perm))
            perm[d0], perm[d1] = perm[d1], perm[d0]
        return self._new("permute", (n,), tuple(n.shape[p] for p in perm), perm=tuple(perm))

    def permute(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        shape = self._eager("permute", dims).shape
        perm = tuple(_wrap_dim(d, self.ndim) for d in dims)
        return self._new("permute", (self._node,), tuple(shape), perm=perm)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        n = self._node
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(n.size // known if s == -1 else s for s in shape)
        if math.prod(shape) != n.size:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {n.size}")
        return self._new("reshape", (n,), shape)

    view = reshape

    # views whose shape (and errors) eager nbgrad gives, run on a stand-in of no data
    def _eager(self, op, *args, **kwargs):
        """Eager ``op`` on a tensor of this shape and dtype over one element (zero strides):
        its result's shapes, and PyTorch's errors, computing nothing."""
        n = self._node
        stand_in = Tensor._wrap(CPU.as_strided(CPU.zeros((1,), n.dtype.numpy), n.shape, (0,) * len(n.shape),
                                               writeable=False))
        with no_grad():
            return getattr(stand_in, op)(*args, **kwargs)

    def _reshaped(self, op, *args, **kwargs):
        return self._new("reshape", (self._node,), tuple(self._eager(op, *args, **kwargs).shape))

    def unsqueeze(self, dim):
        return self._reshaped("unsqueeze", dim)

    def squeeze(self, *dim):
        return self._reshaped("squeeze", *dim)

    def flatten(self, start_dim=0, end_dim=-1):
        return self._reshaped("flatten", start_dim, end_dim)

    def unflatten(self, dim, sizes):
        return self._reshaped("unflatten", dim, sizes)

    def view_as(self, other):
        return self.reshape(other.shape)

    reshape_as = view_as

    def expand(self, *sizes):
        shape = tuple(self._eager("expand", *sizes).shape)
        return self._new("expand", (self._node,), shape)

    def expand_as(self, other):
        return self.expand(other.shape)

    broadcast_to = expand

    def _slice(self, key):
        return self._new("view", (self._node,), tuple(self._eager("__getitem__", key).shape), key=key)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        for k in key:
            basic = k is None or k is Ellipsis or (isinstance(k, int) and not isinstance(k, bool)) or (
                isinstance(k, slice) and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                             for v in (k.start, k.stop, k.step)))
            if not basic:
                _break(f"indexing with {type(k).__name__} (only basic indices are compiled)")
        return self._slice(key)

    def narrow(self, dim, start, length):
        self._eager("narrow", dim, start, length)
        d = _wrap_dim(dim, self.ndim)
        start = start + self._node.shape[d] if start < 0 else start
        return self._slice((slice(None),) * d + (slice(start, start + length),))

    def _pieces(self, op, *args):
        """split/chunk/unbind: slices along the dim of the pieces eager nbgrad makes."""
        pieces = self._eager(op, *args)
        d = _wrap_dim(args[-1], self.ndim)
        out, start = [], 0
        for p in pieces:
            if op == "unbind":
                out.append(self._slice((slice(None),) * d + (start,)))
                start += 1
            else:
                n = p.shape[d]
                out.append(self._slice((slice(None),) * d + (slice(start, start + n),)))
                start += n
        return tuple(out)

    def split(self, split_size_or_sections, dim=0):
        return self._pieces("split", split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return self._pieces("chunk", chunks, dim)

    def unbind(self, dim=0):
        return self._pieces("unbind", dim)

    # -- hand-written ops (their own kernels): softmax, nll_loss; linear as a product ------------------
    def _softmax(self, dim, dtype, log):
        if dtype is not None:
            return self.to(dtype)._softmax(dim, None, log)
        n = self._node
        dim = _wrap_dim(dim, len(n.shape)) if n.shape else _wrap_dim(dim, 0) * 0
        return self._new("softmax", (n,), n.shape, dim=dim, log=log)

    def softmax(self, dim, dtype=None):
        return self._softmax(dim, dtype, False)

    def log_softmax(self, dim, dtype=None):
        return self._softmax(dim, dtype, True)

    def _nll_loss(self, target, weight, reduction, ignore_index):
        """``F.nll_loss`` on a traced (N, C) input (its checks ran already)."""
        n = self._node
        if weight is not None or len(n.shape) != 2 or (isinstance(target, Proxy) and target._node.op != "input"):
            _break("nll_loss with a weight, a target computed in the function, or other than (N, C) input")
        t = _node(target, self._graph)                 # an argument's node, or a lifted tensor's
        shape = (n.shape[0],) if reduction == "none" else ()
        return self._new("nll_loss", (n, t), shape, reduction=reduction, ignore_index=ignore_index)

    def _linear(self, weight, bias):
        """``F.linear`` on a traced input: a product with the transposed weight, plus the bias."""
        w = Proxy(_node(weight, self._graph), self._graph)
        out = self @ w.t()
        return out if bias is None else out + bias


_VIEWS = {"view", "reshape", "permute", "expand"}       # nodes whose value may share their operand's memory


def _eager_op():
    """The nbgrad function that user code called (the outermost frame inside nbgrad)."""
    stack = traceback.extract_stack()
    user = max((i for i, f in enumerate(stack) if not os.path.abspath(f.filename).startswith(_PACKAGE)), default=-1)
    inside = [f.name for f in stack[user + 1:] if os.path.abspath(f.filename) != os.path.abspath(__file__)]
    return inside[0] if inside else "an op"


for _alias, _name in _method_table().items():
    if _alias not in Proxy.__dict__:
        setattr(Proxy, _alias, lambda self, *others, _name=_name, **params: self._op(_name, *others, **params))


def _eager_method(name):
    return lambda self, *args, **kwargs: getattr(Tensor, name)(self, *args, **kwargs)


def _eager_linear(self, weight, bias):
    from ..nn.functional import linear
    return linear(self, weight, bias)


def _eager_softmax(self, dim, dtype, log):
    from ..functional.reduction import _softmax
    return _softmax(self, dim, dtype, log)


def _eager_nll_loss(self, target, weight, reduction, ignore_index):
    from ..nn.functional import nll_loss
    return nll_loss(self, target, weight, reduction=reduction, ignore_index=ignore_index)


def _inplace_method(name):
    def method(self, *args, **kwargs):
        return self._inplace(name[:-1], *args, **kwargs)
    method.__name__ = name
    return method


# in-place forms of the ops above (``add_``, ``relu_``...): functionalized
_INPLACE = {a for a, r in _method_table().items() if TABLE[r].inplace} | \
    {r for r, rec in TABLE.items() if rec.inplace} | {"add", "sub", "div", "pow", "clamp", "clip", "masked_fill"}
for _name in _INPLACE:
    if _name + "_" not in Proxy.__dict__:
        setattr(Proxy, _name + "_", _inplace_method(_name + "_"))


# every op a proxy takes part in is an ``_entry``: after a break during it, it runs eagerly
_EAGER_OF = {"_linear": _eager_linear, "_softmax": _eager_softmax, "_nll_loss": _eager_nll_loss,
             "__getattr__": lambda self, name: getattr(self, name)}
for _name, _fn in list(Proxy.__dict__.items()):
    if isinstance(_fn, types.FunctionType) and _name not in ("__init__", "__repr__", "_new") and \
            (_name in _EAGER_OF or hasattr(Tensor, _name)):
        setattr(Proxy, _name, _entry(_fn, _EAGER_OF.get(_name) or _eager_method(_name)))
# the Tensor methods a proxy inherits run eagerly on it, and break where they read its data
for _name, _fn in list(Tensor.__dict__.items()):
    if isinstance(_fn, types.FunctionType) and _name not in Proxy.__dict__ and \
            _name not in ("__init__", "__repr__", "__del__", "__getattr__", "__setattr__", "_wrap"):
        setattr(Proxy, _name, _entry(_fn, _fn))


def _matmul(a, b):
    graph = _graph()
    na, nb = _node(a, graph), _node(b, graph)
    if not (isinstance(na, Node) and isinstance(nb, Node)) or len(na.shape) != 2 or len(nb.shape) != 2:
        _break("matmul of other than two 2-D tensors")
    if na.shape[1] != nb.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({na.shape[0]}x{na.shape[1]} and "
                           f"{nb.shape[0]}x{nb.shape[1]})")
    dtype = _float([na.dtype, nb.dtype], True)
    if na.dtype is not nb.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {na.dtype} != {nb.dtype}")
    node = Node("matmul", (na, nb), (na.shape[0], nb.shape[1]), dtype, na.requires_grad or nb.requires_grad)
    return Proxy(graph.add(node), graph)


def _cat(tensors, dim):
    """``torch.cat`` of traced values (with eager's checks and texts); operands of another
    dtype are cast to the promoted one first."""
    graph = _graph()
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    nodes = []
    for i, x in enumerate(tensors):
        if not isinstance(x, (Tensor, Proxy)):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got {type(x).__name__}")
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
        if tuple(x.shape) == (0,) and len(tensors) > 1:
            _break("cat with a legacy empty 1-D tensor")
        nodes.append(_node(x, graph))
    ref = nodes[0]
    d = _wrap_dim(dim, len(ref.shape))
    for i, n in enumerate(nodes):
        if len(n.shape) != len(ref.shape):
            raise RuntimeError(f"Tensors must have same number of dimensions: got {len(ref.shape)} and {len(n.shape)}")
        for j in range(len(ref.shape)):
            if j != d and n.shape[j] != ref.shape[j]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{ref.shape[j]} but got size {n.shape[j]} for tensor number {i} in the list.")
    dtype = _float([n.dtype for n in nodes], True)
    nodes = [n if n.dtype is dtype else Proxy(n, graph).to(dtype)._node for n in nodes]
    shape = ref.shape[:d] + (sum(n.shape[d] for n in nodes),) + ref.shape[d + 1:]
    node = Node("cat", nodes, shape, dtype, any(n.requires_grad for n in nodes), {"dim": d})
    return Proxy(graph.add(node), graph)


def _stack(tensors, dim):
    """``torch.stack``: each operand given a dim of 1 there, then ``cat``."""
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape = tuple(tensors[0].shape)
    for i, x in enumerate(tensors):
        if tuple(x.shape) != shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape)} at entry 0 "
                               f"and {list(x.shape)} at entry {i}")
    d = _wrap_dim(dim, len(shape) + 1)
    graph = _graph()
    return _cat([Proxy(_node(x, graph), graph).reshape(shape[:d] + (1,) + shape[d:]) for x in tensors], d)


def _addmm(input, mat1, mat2, beta, alpha):
    return Proxy(_node(input, _graph()), _graph()).addmm(mat1, mat2, beta=beta, alpha=alpha)


def _eager_cat(tensors, dim):
    from ..functional.shape import cat
    return cat(tensors, dim)


def _eager_stack(tensors, dim):
    from ..functional.shape import stack
    return stack(tensors, dim)


def _eager_addmm(input, mat1, mat2, beta, alpha):
    from ..functional.linalg import addmm
    return addmm(input, mat1, mat2, beta=beta, alpha=alpha)


_cat, _stack, _addmm = _entry(_cat, _eager_cat), _entry(_stack, _eager_stack), _entry(_addmm, _eager_addmm)
_traced_pointwise = _entry(pointwise_op, lambda name, operands: None)


def _structure(value, leaf):
    if isinstance(value, (tuple, list)):
        return type(value)(_structure(v, leaf) for v in value)
    return leaf(value)


class Done:
    """What a capture in resume mode returns: the function's result, computed (its traced
    part by the program the ``resume`` callback ran, the rest eagerly)."""

    def __init__(self, value):
        self.value = value


def capture(fn, args, kwargs, resume=None):
    """The graph of ``fn(*args, **kwargs)``, its tensor arguments as proxies (in the order
    ``args`` then ``kwargs`` lists them, top level and inside lists and tuples).

    With ``resume`` (``resume(graph, message)`` runs a graph on the real inputs and returns
    its outputs' tensors), a graph break does not raise: what was captured so far is run
    there, and the function goes on eagerly (``materialize``); if nothing breaks, the whole
    graph is run at the end. Either way the result is a ``Done``."""
    graph = Graph()
    count = [0]

    def proxy(value):
        if isinstance(value, Tensor):
            count[0] += 1
            p = Proxy(graph.input(value, ("arg", count[0] - 1)), graph)
            graph.arguments[p._node.index] = value
            return p
        return value

    pointwise.TRACING.trace = _trace_hook
    from . import effects
    EFFECTS.hook = effects.hook
    traced_args = _structure(args, proxy)
    traced_kwargs = {k: _structure(v, proxy) for k, v in kwargs.items()}
    if _graph() is not None:
        _break("nbgrad.compile called inside a compiled function")
    _state.graph, _state.resume, _state.depth = graph, resume, 0
    pointwise.TRACING.ops.update(cat=_cat, stack=_stack, addmm=_addmm)
    try:
        out = fn(*traced_args, **traced_kwargs)
        if resume is not None:
            if _state.graph is graph:          # no break: the whole graph, its live values the outputs
                materialize(graph)
            _sync(graph)
            return Done(out)
    finally:
        _state.graph = _state.resume = None
        pointwise.TRACING.ops.clear()
        effects.restore(graph)

    def output(value):
        if isinstance(value, Proxy):
            return _node(value, graph)
        if isinstance(value, Tensor):
            _break("the compiled function returns a tensor it did not compute")
        return value

    graph.outputs = _structure(out, output)
    effects.check(graph, fn)
    _prune(graph)
    return graph


def _prune(graph):
    """Inputs that reach no differentiable output along a path of gradients (only through
    comparisons, say) get no gradient: None, as in eager, rather than zeros."""
    reached = set()
    roots = _outputs(graph.outputs) + [e.loss for e in graph.effects if hasattr(e, "loss")]   # effects.Backward
    todo = [n for n in roots if n.requires_grad]
    while todo:
        n = todo.pop()
        if n.index in reached:
            continue
        reached.add(n.index)
        record = TABLE[n.params["record"]] if n.op == "pointwise" else None
        for k, a in enumerate(n.args):
            if not isinstance(a, Node) or not a.requires_grad or n.op == "indices":
                continue
            if record is not None and (k >= len(record.args) or record.grads.get(record.args[k]) is None):
                continue
            todo.append(a)
    for n in graph.inputs:
        if n.requires_grad and n.index not in reached:
            n.requires_grad = False


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [n for o in out for n in _outputs(o)]
    return [out] if isinstance(out, Node) else []
