"""Pictures of the backward graph, drawn as torchviz (``torchviz.make_dot``) draws them.

Grey boxes are backward nodes (labelled with their class name, ``MulBackward0``), light
blue boxes the leaf tensors whose ``.grad`` backward fills, orange boxes saved tensors,
green boxes the tensors passed in (and, darker, the bases of those that are views).
As in torchviz, an edge leads from each entry of a node's ``next_functions`` to the node,
and from a leaf to its ``AccumulateGrad``: the direction of the forward computation.

The graph is walked with an explicit stack, so a graph of any depth can be drawn. Every
box is collected before any is written, so that a tensor seen in two roles (a leaf that
is also saved) is one box, coloured by its most telling role.
"""

__all__ = ["make_dot", "resize_graph"]

_NODE_ATTR = dict(style="filled", shape="box", align="left", fontsize="10", ranksep="0.1", height="0.2",
                  fontname="monospace")

# a tensor in several roles gets the colour of the first role in this list
_OUTPUT, _BASE, _LEAF, _SAVED = "darkolivegreen1", "darkolivegreen3", "lightblue", "orange"
_RANK = {_OUTPUT: 0, _BASE: 1, _LEAF: 2, _SAVED: 3}


def _digraph_class():
    try:
        from graphviz import Digraph
    except ImportError:
        raise ImportError("nbgrad.viz.make_dot needs the graphviz Python package: pip install graphviz "
                          "(or pip install nbgrad[viz]); rendering also needs Graphviz's `dot` program "
                          "(e.g. apt-get install graphviz)") from None
    return Digraph


def _size_to_str(shape):
    return "(" + ", ".join(str(n) for n in shape) + ")"


# bookkeeping of nodes and of custom Functions' ctx, not attributes of the operation
_NOT_ATTRS = {"variable", "num_outputs", "to_save", "dirty_tensors", "non_differentiable", "materialize_grads",
              "saved_for_forward"}


def _attrs_of(fn):
    """What ``show_attrs`` lists for a node: its public attributes and whether it saved tensors."""
    from .tensor import Tensor
    attrs = {}
    values = {}                 # class defaults (``AddBackward0.alpha``) under the node's own values
    for cls in reversed(type(fn).__mro__):
        values.update((k, v) for k, v in vars(cls).items()
                      if not callable(v) and not hasattr(v, "__get__"))     # no methods, properties, slots
    values.update(vars(fn))
    for key, value in values.items():
        if key.startswith("_") or key in _NOT_ATTRS:
            continue
        if isinstance(value, Tensor):
            value = "[saved tensor]"
        elif isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
            value = "[saved tensors]"
        attrs[key] = str(value)
    saved = getattr(fn, "_saved", None)
    if saved and any(isinstance(t, Tensor) for t in saved):
        attrs["saved"] = "[saved tensors]"
    return attrs


def _fn_label(fn, show_attrs, max_attr_chars):
    name = type(fn).__name__
    attrs = _attrs_of(fn) if show_attrs else None
    if not attrs:
        return name
    max_attr_chars = max(max_attr_chars, 3)
    col1 = max(len(k) for k in attrs)
    col2 = min(max(len(v) for v in attrs.values()), max_attr_chars)
    sep = "-" * max(col1 + col2 + 2, len(name))

    def truncate(s):
        return s[:col2 - 3] + "..." if len(s) > col2 else s
    lines = "\n".join(f"{k:<{col1}}: {truncate(v):>{col2}}" for k, v in attrs.items())
    return name + "\n" + sep + "\n" + lines


def make_dot(var, params=None, show_attrs=False, show_saved=False, max_attr_chars=50):
    """A ``graphviz.Digraph`` of the graph that produced ``var`` (a tensor or a tuple of them).

    ``params`` maps names to tensors, to label the leaves; ``show_attrs`` lists each node's
    attributes; ``show_saved`` draws every node's saved tensors (a custom Function's are
    always drawn, as in torchviz)."""
    from .autograd.function import BackwardCFunction
    from .tensor import Tensor
    Digraph = _digraph_class()
    if params is not None:
        if not all(isinstance(p, Tensor) for p in params.values()):
            raise TypeError("make_dot: every value of params must be a Tensor")
        names = {id(v): k for k, v in params.items()}
    else:
        names = {}

    tensors = {}          # id -> [tensor, name if drawn as saved, colour]
    fns = {}              # id -> node
    edges = []            # (from id, to id, attrs)

    def add_tensor(t, colour, saved_name=None):
        entry = tensors.get(id(t))
        if entry is None:
            tensors[id(t)] = [t, saved_name, colour]
            return True
        if _RANK[colour] < _RANK[entry[2]]:
            entry[2] = colour
        return False

    stack = []
    for out in (var if isinstance(var, tuple) else (var,)):
        t, colour = out, _OUTPUT
        while t is not None and add_tensor(t, colour):     # the output, then the bases of views
            if t.grad_fn is not None:
                stack.append(t.grad_fn)
                edges.append((id(t.grad_fn), id(t), {}))
            base = t._base
            if base is not None:
                edges.append((id(base), id(t), {"style": "dotted"}))
            t, colour = base, _BASE

    while stack:
        fn = stack.pop()
        if id(fn) in fns:
            continue
        fns[id(fn)] = fn
        if show_saved or isinstance(fn, BackwardCFunction):
            custom = isinstance(fn, BackwardCFunction)
            labels = type(fn)._saved_names or ()       # torchviz labels them by PyTorch's names: self, other
            for i, t in enumerate(getattr(fn, "_saved", None) or ()):
                if isinstance(t, Tensor):
                    add_tensor(t, _SAVED, None if custom else labels[i] if i < len(labels) else f"saved[{i}]")
                    ends = (id(t), id(fn)) if custom else (id(fn), id(t))
                    edges.append((*ends, {"dir": "none"}))
        variable = getattr(fn, "variable", None)
        if variable is not None:                       # AccumulateGrad: draw its leaf
            add_tensor(variable, _LEAF)
            edges.append((id(variable), id(fn), {}))
        for next_fn, _ in fn.next_functions:
            if next_fn is not None:
                edges.append((id(next_fn), id(fn), {}))
                if id(next_fn) not in fns:
                    stack.append(next_fn)

    dot = Digraph(node_attr=_NODE_ATTR, graph_attr=dict(size="12,12"))
    for key, (t, saved_name, colour) in tensors.items():
        name = names.get(key) or (saved_name if colour == _SAVED else None) or ""
        dot.node(str(key), f"{name}\n {_size_to_str(t.shape)}", fillcolor=colour)
    for key, fn in fns.items():
        dot.node(str(key), _fn_label(fn, show_attrs, max_attr_chars))
    for a, b, attrs in edges:
        dot.edge(str(a), str(b), **attrs)
    resize_graph(dot)
    return dot


def resize_graph(dot, size_per_element=0.15, min_size=12):
    """Scale the drawing with the number of statements in it."""
    size = max(min_size, len(dot.body) * size_per_element)
    dot.graph_attr.update(size=f"{size},{size}")
