"""``nbgrad.viz.make_dot``: the backward graph as torchviz draws it."""
import re
import shutil
import sys

import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import Function
from nbgrad.autograd.graph import Node
from nbgrad.viz import make_dot

try:
    import graphviz
except ImportError:                      # only the test of the missing package can run
    graphviz = None
needs_graphviz = pytest.mark.skipif(graphviz is None, reason="the graphviz Python package is not installed")


def tutorial_graph():
    a, x1, x2, x3, x4 = (nbgrad.randn(5, 5, requires_grad=True) for _ in range(5))
    b = x1 * a
    c = x2 * a
    d = x3 * b + x4 * c
    L = (10 - d).sum()
    return L, dict(a=a, x1=x1, x2=x2, x3=x3, x4=x4)


def parse(dot):
    """Nodes as {id: (label, fillcolor)} and edges as [(from, to, attrs)] from the dot source."""
    nodes, edges = {}, []
    for stmt in re.findall(r"^\t(.*?)(?=^\t|^\})", dot.source, flags=re.S | re.M):
        m = re.match(r"(\d+) -> (\d+)(?: \[(.*)\])?\s*$", stmt, flags=re.S)
        if m:
            edges.append((m.group(1), m.group(2), m.group(3) or ""))
            continue
        m = re.match(r'(\d+) \[label=(?:"(.*?)"|(\S+))(?: fillcolor=(\S+))?\]\s*$', stmt, flags=re.S)
        if m:
            nodes[m.group(1)] = (m.group(2) if m.group(2) is not None else m.group(3), m.group(4))
    return nodes, edges


@needs_graphviz
def test_tutorial_graph():
    L, params = tutorial_graph()
    dot = make_dot(L, params=params)
    assert isinstance(dot, graphviz.Digraph)
    nodes, edges = parse(dot)
    labels = sorted(label for label, _ in nodes.values())
    assert labels == sorted(["\n ()"] + [f"{n}\n (5, 5)" for n in params] + ["AccumulateGrad"] * 5 +
                            ["MulBackward0"] * 4 + ["AddBackward0", "RsubBackward1", "SumBackward0"])
    by_label = {label: key for key, (label, _) in nodes.items()}
    for name, t in params.items():
        key = by_label[f"{name}\n (5, 5)"]
        assert key == str(id(t)) and nodes[key][1] == "lightblue"
        acc = str(id(t._grad_accumulator()))
        assert (key, acc, "") in edges                          # leaf -> its AccumulateGrad
    out = str(id(L))
    assert nodes[out] == ("\n ()", "darkolivegreen1")
    assert (str(id(L.grad_fn)), out, "") in edges
    # every next_functions entry is an edge into its node
    stack, seen = [L.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        assert nodes[str(id(fn))][0] == type(fn).__name__
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                assert (str(id(nxt)), str(id(fn)), "") in edges
                stack.append(nxt)
    assert len(seen) == 12 == len(nodes) - 6
    assert len(edges) == 1 + 12 + 5                           # output, next_functions, leaves
    # the a leaf feeds both products that use it, through one AccumulateGrad
    acc_a = str(id(params["a"]._grad_accumulator()))
    assert sum(1 for e in edges if e[0] == acc_a) == 2


@needs_graphviz
def test_the_graph_still_backpropagates_after_drawing():
    L, params = tutorial_graph()
    make_dot(L, params=params, show_attrs=True, show_saved=True)
    L.backward()
    v = {k: t.detach().numpy() for k, t in params.items()}
    np.testing.assert_allclose(params["a"].grad.numpy(), -(v["x1"] * v["x3"] + v["x2"] * v["x4"]), rtol=1e-6)
    np.testing.assert_allclose(params["x3"].grad.numpy(), -(v["x1"] * v["a"]), rtol=1e-6)


@needs_graphviz
def test_show_saved_and_show_attrs():
    L, params = tutorial_graph()
    dot = make_dot(L, params=params, show_saved=True, show_attrs=True)
    nodes, edges = parse(dot)
    saved = [key for key, (_, colour) in nodes.items() if colour == "orange"]
    assert len(saved) == 2                         # b and c, saved by x3 * b and x4 * c
    for key in saved:
        assert nodes[key][0] == "other\n (5, 5)"             # torchviz labels saved tensors by PyTorch's names
        assert sum(1 for e in edges if e[1] == key and e[2] == "dir=none") == 1
    # saved leaves keep their blue box and name, and get an undirected edge
    a = str(id(params["a"]))
    assert nodes[a] == ("a\n (5, 5)", "lightblue")
    assert sum(1 for e in edges if e[1] == a and e[2] == "dir=none") == 2
    add = next(label for label, _ in nodes.values() if label.startswith("AddBackward0"))
    assert add == "AddBackward0"                   # nothing saved, no constant
    mul = next(label for label, _ in nodes.values() if label.startswith("MulBackward0"))
    assert mul.splitlines()[-1] == "saved: [saved tensors]"


@needs_graphviz
def test_max_attr_chars_truncates():
    x = nbgrad.randn(3, requires_grad=True)
    y = x.add(x, alpha=-0.123456789)
    label = parse(make_dot(y, show_attrs=True, max_attr_chars=10))[0][str(id(y.grad_fn))][0]
    assert label.splitlines()[0] == "AddBackward0"
    line = next(s for s in label.splitlines() if s.startswith("alpha"))
    assert line == "alpha: -0.1234..."


@needs_graphviz
def test_custom_function_saved_tensors_are_always_drawn():
    class MyExp(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            ctx.constant = 2
            return y

        @staticmethod
        def backward(ctx, grad):
            y, = ctx.saved_tensors
            return grad * y

    x = nbgrad.randn(4, requires_grad=True)
    y = MyExp.apply(x) * 3
    nodes, edges = parse(make_dot(y, params={"x": x}, show_attrs=True))
    fn = y.grad_fn.next_functions[0][0]
    label = nodes[str(id(fn))][0].splitlines()
    assert label[0] == "MyExpBackward" and set(label[1]) == {"-"}
    assert sorted(label[2:]) == ["constant:               2", "saved   : [saved tensors]"]
    # an unpacked saved output is a new tensor each time (as in PyTorch): find it by colour
    saved = [key for key, (text, color) in nodes.items() if color == "orange"]
    assert len(saved) == 1 and nodes[saved[0]] == ("\n (4)", "orange")
    assert (saved[0], str(id(fn)), "dir=none") in edges
    assert nodes[str(id(x))] == ("x\n (4)", "lightblue")


@needs_graphviz
def test_several_outputs_and_views():
    x = nbgrad.randn(2, 3, requires_grad=True)
    y, z = x * 2, x.exp()
    nodes, edges = parse(make_dot((y, z)))
    assert nodes[str(id(y))][1] == nodes[str(id(z))][1] == "darkolivegreen1"
    assert nodes[str(id(x))] == ("\n (2, 3)", "lightblue")
    assert sum(1 for _, colour in nodes.values() if colour is None) == 3     # Mul, Exp, AccumulateGrad
    base = x * 1
    view = nbgrad.Tensor._wrap(base._data[0])          # a view of base, as slicing makes
    view._base, view.grad_fn = base, base.grad_fn
    nodes, edges = parse(make_dot(view))
    assert nodes[str(id(base))][1] == "darkolivegreen3"
    assert (str(id(base)), str(id(view)), "style=dotted") in edges


@needs_graphviz
def test_leaf_and_scalar_shapes():
    x = nbgrad.tensor(2.0, requires_grad=True)
    nodes, edges = parse(make_dot(x))
    assert nodes == {str(id(x)): ("\n ()", "darkolivegreen1")} and edges == []


@needs_graphviz
def test_params_must_be_tensors():
    x = nbgrad.randn(2, requires_grad=True)
    with pytest.raises(TypeError):
        make_dot(x * 2, params={"x": 3})


class StepBackward0(Node):
    pass


@needs_graphviz
def test_deep_graph_needs_no_recursion():
    x = nbgrad.ones(1, requires_grad=True)
    fn = x._grad_accumulator()
    for _ in range(100_000):                       # the nodes of y = x + 1 + 1 + ..., built directly
        fn = StepBackward0(((fn, 0), (None, 0)), (((1,), nbgrad.float32), None))
    y = nbgrad.Tensor._wrap(x._data + 100_000)
    y.grad_fn = fn
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)                     # a recursive walk would fail at once
    try:
        dot = make_dot(y)
    finally:
        sys.setrecursionlimit(limit)
    assert len(dot.body) == 100_000 * 2 + 5       # chain nodes and edges, leaf, AccumulateGrad, output
    assert float(dot.graph_attr["size"].split(",")[0]) == len(dot.body) * 0.15


def test_missing_graphviz_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"pip install graphviz.*nbgrad\[viz\]"):
        make_dot(nbgrad.ones(1, requires_grad=True) * 2)


@needs_graphviz
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_renders(tmp_path):
    L, params = tutorial_graph()
    dot = make_dot(L, params=params, show_saved=True)
    svg = dot.pipe(format="svg").decode()
    assert svg.lstrip().startswith("<?xml") and "MulBackward0" in svg and "SumBackward0" in svg
    path = dot.render(tmp_path / "graph", format="png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
