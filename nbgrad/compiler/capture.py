"""Capture: run a function once on abstract values, recording its ops as a graph.

The traced function sees ``Proxy`` objects where it was given tensors: they carry a shape, a
dtype and ``requires_grad``, and no data, so capturing computes nothing and compiles no
kernel (JAX's abstract values, PyTorch's fake tensors). Each op a proxy takes part in
appends a node: the op table's pointwise records (by their name, so that code generation
reads their forward and derivative expressions), sums and means, matrix products,
transposes and reshapes. A real tensor met on the way (a module's parameter, a closed-over
tensor) becomes an input of the graph, read afresh at every call.

Anything else (an op the compiler does not know, data-dependent Python such as ``.item()``,
``bool(t)``, ``print``) raises ``GraphBreak``, naming the op and the line of user code.
"""
import math
import os
import threading
import traceback

import numpy as np

from nbgrad.ops.table import TABLE

from ..autograd.grad_mode import is_grad_enabled
from ..functional import pointwise
from ..tensor import Size, Tensor, device

__all__ = ["GraphBreak", "Graph", "Node", "Proxy", "capture"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GraphBreak(RuntimeError):
    """What the compiler could not capture, and where in user code."""


def _user_line():
    """'file:line: code' of the innermost frame outside nbgrad."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno}: {frame.line}"
    return "<unknown>"


def _break(what):
    raise GraphBreak(f"{what} (at {_user_line()})")


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

    def add(self, node):
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def input(self, tensor, source):
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
        return entry[1]

    def __str__(self):
        lines = [repr(n) for n in self.nodes]
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


def pointwise_op(name, operands):
    """Trace op-table record ``name`` over ``operands`` (its args, then its params)."""
    graph = _graph()
    record = TABLE[name]
    nodes = [_node(x, graph) for x in operands]
    tensors = [n for n in nodes[:len(record.args)] if isinstance(n, Node)]
    for n in nodes:
        if not isinstance(n, (Node, int, float)) or isinstance(n, bool):
            _break(f"{name} with an operand of type {type(n).__name__}")
    dtype = _float([t.dtype for t in tensors], record.result == "float")
    shape = np.broadcast_shapes(*(t.shape for t in tensors))
    requires_grad = bool(record.grads) and is_grad_enabled() and any(t.requires_grad for t in tensors)
    return Proxy(graph.add(Node("pointwise", nodes, shape, dtype, requires_grad, {"record": name})), graph)


def _trace_hook(name, operands):
    """Called by the generated pointwise functions (``functional.pointwise``) on their general
    path, once a capture has run: an op whose operands include a proxy is traced instead of
    computed (``nbgrad.tanh(proxy)``, ``F.relu(proxy)``, ``tensor * proxy``)."""
    if _graph() is None or not any(isinstance(x, Proxy) for x in operands):
        return None
    return pointwise_op(name, operands)


def _method_table():
    """Proxy methods from the op table: every alias of every record with a function."""
    methods = {}
    for name, record in TABLE.items():
        if name in pointwise.RUN:
            for alias in record.api:
                methods[alias] = name
    return methods


class Proxy:
    """A traced tensor: shape, dtype and requires_grad, no data."""
    __slots__ = ("_node", "_graph")
    __array_priority__ = 2000

    def __init__(self, node, graph):
        self._node, self._graph = node, graph

    shape = property(lambda self: Size(self._node.shape))
    dtype = property(lambda self: self._node.dtype)
    ndim = property(lambda self: len(self._node.shape))
    requires_grad = property(lambda self: self._node.requires_grad)
    is_leaf = property(lambda self: self._node.op == "input")
    device = property(lambda self: device("cpu"))

    def dim(self):
        return len(self._node.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self._node.shape[dim]

    def numel(self):
        return self._node.size

    def __repr__(self):
        return f"Proxy({self._node!r})"

    # -- data-dependent Python: graph breaks --------------------------------------------------------
    def _data_dependent(self, *args, **kwargs):
        _break("data-dependent Python on a traced tensor (.item(), bool(), .numpy(), print...)")

    __bool__ = __float__ = __int__ = __index__ = __str__ = __format__ = __array__ = __iter__ = __len__ = \
        item = tolist = numpy = backward = _data_dependent

    def _comparison(self, other):
        _break("comparisons of traced tensors are not supported by nbgrad.compile yet")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _comparison
    __hash__ = object.__hash__

    def __getattr__(self, name):
        _break(f"Tensor.{name} is not supported by nbgrad.compile yet")

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
        if min is None or max is None:
            _break("clamp with one bound")
        return self._op("clamp", min, max)

    clip = clamp

    # -- reductions, products, shapes -------------------------------------------------------------------
    def _reduce(self, op, dim, keepdim, dtype):
        if dtype is not None:
            _break(f"{op}(dtype=...)")
        ndim = self.ndim
        if dim is None or dim == () or dim == []:
            dims = tuple(range(ndim))
        else:
            dims = tuple(sorted({d % ndim if ndim else 0 for d in ((dim,) if isinstance(dim, int) else dim)}))
        shape = self._node.shape
        keep = tuple(1 if d in dims else n for d, n in enumerate(shape))
        out = keep if keepdim else tuple(n for d, n in enumerate(shape) if d not in dims)
        count = math.prod(shape[d] for d in dims)
        scale = 1.0 if op == "sum" else (1.0 / count if count else math.nan)
        node = Node("sum", (self._node,), out, self._node.dtype, self._node.requires_grad,
                    {"dims": dims, "keep": keep, "scale": scale, "mean": op == "mean"})
        return Proxy(self._graph.add(node), self._graph)

    def sum(self, dim=None, keepdim=False, *, dtype=None):
        return self._reduce("sum", dim, keepdim, dtype)

    def mean(self, dim=None, keepdim=False, *, dtype=None):
        return self._reduce("mean", dim, keepdim, dtype)

    def __matmul__(self, other):
        return _matmul(self, other)

    def __rmatmul__(self, other):
        return _matmul(other, self)

    matmul = mm = __matmul__

    def t(self):
        if self.ndim < 2:
            return self
        if self.ndim != 2:
            _break("t() of a tensor of more than 2 dims")
        return self.transpose(0, 1)

    T = property(t)

    def transpose(self, d0, d1):
        n = self._node
        perm = list(range(len(n.shape)))
        perm[d0], perm[d1] = perm[d1], perm[d0]
        node = Node("permute", (n,), tuple(n.shape[p] for p in perm), n.dtype, n.requires_grad, {"perm": tuple(perm)})
        return Proxy(self._graph.add(node), self._graph)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        n = self._node
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(n.size // known if s == -1 else s for s in shape)
        if math.prod(shape) != n.size:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {n.size}")
        return Proxy(self._graph.add(Node("reshape", (n,), shape, n.dtype, n.requires_grad)), self._graph)

    view = reshape

    # -- hand-written ops (their own kernels): softmax, nll_loss; linear as a product ------------------
    def _softmax(self, dim, dtype, log):
        if dtype is not None:
            _break("softmax(dtype=...)")
        n = self._node
        dim = dim % len(n.shape) if n.shape else 0
        node = Node("softmax", (n,), n.shape, n.dtype, n.requires_grad, {"dim": dim, "log": log})
        return Proxy(self._graph.add(node), self._graph)

    def softmax(self, dim, dtype=None):
        return self._softmax(dim, dtype, False)

    def log_softmax(self, dim, dtype=None):
        return self._softmax(dim, dtype, True)

    def _nll_loss(self, target, weight, reduction, ignore_index):
        """``F.nll_loss`` on a traced (N, C) input (its checks ran already)."""
        n = self._node
        computed = isinstance(target, Proxy) and (target._graph is not self._graph or target._node.op != "input")
        if weight is not None or len(n.shape) != 2 or computed:
            _break("nll_loss with a weight, a target computed in the function, or other than (N, C) input")
        t = target._node if isinstance(target, Proxy) else self._graph.lift(target)
        shape = (n.shape[0],) if reduction == "none" else ()
        node = Node("nll_loss", (n, t), shape, n.dtype, n.requires_grad,
                    {"reduction": reduction, "ignore_index": ignore_index})
        return Proxy(self._graph.add(node), self._graph)

    def _linear(self, weight, bias):
        """``F.linear`` on a traced input: a product with the transposed weight, plus the bias."""
        w = Proxy(_node(weight, self._graph), self._graph)
        out = self @ w.t()
        return out if bias is None else out + bias


for _alias, _name in _method_table().items():
    if _alias not in Proxy.__dict__:
        setattr(Proxy, _alias, lambda self, *others, _name=_name, **params: self._op(_name, *others, **params))


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


def _structure(value, leaf):
    if isinstance(value, (tuple, list)):
        return type(value)(_structure(v, leaf) for v in value)
    return leaf(value)


def capture(fn, args, kwargs):
    """The graph of ``fn(*args, **kwargs)``, its tensor arguments as proxies (in the order
    ``args`` then ``kwargs`` lists them, top level and inside lists and tuples)."""
    graph = Graph()
    count = [0]

    def proxy(value):
        if isinstance(value, Tensor):
            count[0] += 1
            return Proxy(graph.input(value, ("arg", count[0] - 1)), graph)
        return value

    pointwise.TRACING.trace = _trace_hook
    traced_args = _structure(args, proxy)
    traced_kwargs = {k: _structure(v, proxy) for k, v in kwargs.items()}
    if _graph() is not None:
        _break("nbgrad.compile called inside a compiled function")
    _state.graph = graph
    try:
        out = fn(*traced_args, **traced_kwargs)
    finally:
        _state.graph = None

    def output(value):
        if isinstance(value, Proxy):
            return _node(value, graph)
        if isinstance(value, Tensor):
            _break("the compiled function returns a tensor it did not compute")
        return value

    graph.outputs = _structure(out, output)
    return graph
