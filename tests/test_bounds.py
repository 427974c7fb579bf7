"""No kernel reads or writes out of bounds, whatever the index holds (issue 7, items 1, 6, 9).

Indices are checked inside the kernels, in the pass that uses them, forward and backward:
an index saved for backward can be changed in place through ``.data``, ``.numpy()`` or a
``from_numpy`` alias without a version bump, and before the fix such a change made the
backward of gather/scatter write wherever it pointed (a segfault for ``10**9``). Those
programs run in a child process, so that a regression fails its tests instead of killing
the run; the others run here. Each is compared with PyTorch: the same values and gradients,
or the same error type and text.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nbgrad
from helpers import check_grad, to_numpy
from nbgrad.ops import index as index_kernels
from nbgrad.ops import loss as loss_kernels
from nbgrad.ops.elementwise import PARALLEL_MIN


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def outcome(fn):
    """``fn()``'s tensors as lists (None stays None), or ``["raised", type, first line]``; in
    the form JSON gives back, so a child's outcome compares with one computed here."""
    try:
        values = fn()
    except Exception as e:                     # noqa: BLE001  (compared with torch's)
        return ["raised", type(e).__name__, str(e).split("\n")[0]]
    return ["values", [None if v is None else to_numpy(v).tolist() for v in values]]


def assert_same(ours, theirs):
    assert ours[0] == theirs[0], f"{ours} vs {theirs}"
    if ours[0] == "raised":
        assert ours == theirs
        return
    assert len(ours[1]) == len(theirs[1])
    for a, b in zip(ours[1], theirs[1]):
        assert (a is None) == (b is None), f"{ours} vs {theirs}"
        if a is not None:
            np.testing.assert_allclose(np.array(a, dtype=np.float64), np.array(b, dtype=np.float64), rtol=1e-6)


def same(torch, program):
    assert_same(outcome(lambda: program(nbgrad)), outcome(lambda: program(torch)))


# -- the index changed between forward and backward (crash-prone: run in a child process) ------------
def gather_changed(value, how="data"):
    """The issue's reproducer: ``x.gather(0, idx)``, then ``idx`` changed behind autograd's back."""
    def program(T):
        a = np.array([0, 1])
        idx = T.from_numpy(a) if how == "alias" else T.tensor([0, 1])
        x = T.tensor([0.0, 1.0, 2.0], requires_grad=True)
        y = x.gather(0, idx)
        if how == "data":
            idx.data[0] = value
        elif how == "numpy":
            idx.numpy()[0] = value
        else:
            a[0] = value
        y.sum().backward()
        return (x.grad,)
    return program


def gather_2d_changed(T):
    x = T.arange(12.0).reshape(3, 4).requires_grad_(True)
    idx = T.tensor([[0, 3], [1, 1], [2, 0]])
    y = x.gather(1, idx)
    idx.data[1, 1] = 4
    (y * T.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    return (x.grad,)


def scatter_changed(op, value, src_grad=True, self_grad=True):
    def program(T):
        idx = T.tensor([0, 1])
        x = T.zeros(3, requires_grad=self_grad)
        src = T.tensor([5.0, 6.0], requires_grad=src_grad)
        y = getattr(x, op)(0, idx, src)
        idx.data[1] = value
        (y * T.tensor([1.0, 2.0, 3.0])).sum().backward()
        return x.grad, src.grad
    return program


def scatter_value_changed(T):
    idx = T.tensor([[0], [2]])
    x = T.ones(2, 3, requires_grad=True)
    y = x.scatter(1, idx, 7.0)
    idx.data[1, 0] = -1
    y.sum().backward()
    return (x.grad,)


def gather_index_replaced(new):
    """``idx.data = other``: a new shape or dtype, which PyTorch's backward checks again."""
    def program(T):
        idx = T.tensor([0, 1])
        x = T.tensor([0.0, 1.0, 2.0], requires_grad=True)
        y = x.gather(0, idx)
        idx.data = T.tensor(new)
        y.sum().backward()
        return (x.grad,)
    return program


def gather_parallel_changed(T):
    """Big enough for the parallel kernels (which order of two bad values PyTorch reports
    depends on its threads: the kernel tests check that nbgrad reports the first)."""
    x = T.ones(600, 500, requires_grad=True)
    idx = T.zeros(600, 500, dtype=T.long)
    y = x.gather(1, idx)
    idx.data[400, 7] = 10**12
    y.sum().backward()
    return (x.grad,)


def nll_changed(value, reduction="mean", shape=(2, 3), weighted=False, ignore_index=-100):
    def program(T):
        x = T.tensor(np.linspace(-1, 1, int(np.prod(shape))).reshape(shape).astype(np.float32),
                     requires_grad=True)
        target = T.zeros((shape[0],) + shape[2:], dtype=T.long)
        target.data.reshape(-1)[-1] = 1
        weight = T.tensor([1.0, 2.0, 3.0]) if weighted else None
        loss = T.nn.functional.nll_loss(x, target, weight, ignore_index=ignore_index, reduction=reduction)
        target.data.reshape(-1)[0] = value
        loss.sum().backward()
        return (x.grad,)
    return program


def nll_parallel_changed(T):
    x = T.zeros(1024, 300, requires_grad=True)
    target = T.zeros(1024, dtype=T.long)
    loss = T.nn.functional.nll_loss(x, target)
    target.data[700] = 300
    loss.backward()
    return (x.grad,)


def nll_double_backward_changed(T):
    x = T.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], requires_grad=True)
    target = T.tensor([0, 2])
    loss = T.nn.functional.nll_loss(x, target, reduction="sum")
    g, = T.autograd.grad(loss, x, create_graph=True)
    target.data[1] = 3
    (g * x).sum().backward()
    return (x.grad,)


def nll_replaced(what):
    def program(T):
        x = T.zeros(2, 3, 2, 2, requires_grad=True)
        target = T.zeros(2, 2, 2, dtype=T.long)
        weight = T.ones(3)
        loss = T.nn.functional.nll_loss(x, target, weight)
        if what == "target":
            target.data = T.zeros(2, 2, 3, dtype=T.long)
        else:
            weight.data = T.ones(2)
        loss.backward()
        return (x.grad,)
    return program


def cross_entropy_changed(T):
    x = T.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], requires_grad=True)
    target = T.tensor([0, 2])
    loss = T.nn.functional.cross_entropy(x, target)
    target.data[0] = 7
    loss.backward()
    return (x.grad,)


CHANGED = {
    "gather 10**9 via .data": gather_changed(10**9),
    "gather 3 via .data": gather_changed(3),
    "gather -1 via .numpy()": gather_changed(-1, "numpy"),
    "gather 5 via from_numpy alias": gather_changed(5, "alias"),
    "gather in range via .data": gather_changed(2),
    "gather 2-D along dim 1": gather_2d_changed,
    "gather parallel": gather_parallel_changed,
    "gather index replaced, bigger": gather_index_replaced([0, 1, 2, 0]),
    "gather index replaced, smaller": gather_index_replaced([2]),
    "gather index replaced, float": gather_index_replaced([0.0, 1.0]),
    "scatter src": scatter_changed("scatter", 5),
    "scatter src, src only": scatter_changed("scatter", 5, self_grad=False),
    "scatter src, self only": scatter_changed("scatter", -4, src_grad=False),
    "scatter value": scatter_value_changed,
    "scatter_add src": scatter_changed("scatter_add", 10**9),
    "scatter_add, self only (index unused)": scatter_changed("scatter_add", 10**9, src_grad=False),
    "nll_loss mean": nll_changed(5),
    "nll_loss sum, negative": nll_changed(-3, "sum"),
    "nll_loss weighted": nll_changed(3, weighted=True),
    "nll_loss ignored in backward": nll_changed(-100),
    "nll_loss ignore_index changed to a class": nll_changed(1, ignore_index=0),
    "nll_loss 4-D": nll_changed(4, shape=(2, 3, 2, 2)),
    "nll_loss parallel": nll_parallel_changed,
    "nll_loss double backward": nll_double_backward_changed,
    "nll_loss target replaced": nll_replaced("target"),
    "nll_loss weight replaced": nll_replaced("weight"),
    "cross_entropy": cross_entropy_changed,
    # PyTorch's own backward writes out of bounds here (it checks only for 'mean' and 'sum')
    "nll_loss none": nll_changed(5, "none"),
}
EXPECTED = {"nll_loss none": ["raised", "IndexError", "Target 5 is out of bounds."]}


def _child(start):
    """Run the programs of CHANGED from number ``start`` in nbgrad, one JSON line each,
    flushed as it goes."""
    for name, program in list(CHANGED.items())[start:]:
        print(json.dumps([name, outcome(lambda: program(nbgrad))]), flush=True)


@pytest.fixture(scope="module")
def changed_outcomes():
    """Every program's outcome in a child process; one that kills its process is recorded
    as ``["crashed", exit status, stderr]`` and a new child goes on with the next."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    names, results = list(CHANGED), {}
    while len(results) < len(names):
        start = len(results)
        proc = subprocess.run([sys.executable, "-c", f"import test_bounds; test_bounds._child({start})"],
                              capture_output=True, text=True, timeout=600, env=env)
        results.update(json.loads(line) for line in proc.stdout.splitlines() if line.startswith("["))
        if proc.returncode != 0 and len(results) < len(names):
            results[names[len(results)]] = ["crashed", proc.returncode, proc.stderr[-2000:]]
    return results


@pytest.mark.parametrize("name", list(CHANGED))
def test_index_changed_before_backward(torch, changed_outcomes, name):
    ours = changed_outcomes[name]
    assert ours[0] != "crashed", f"the program killed its process (exit {ours[1]}):\n{ours[2]}"
    assert_same(ours, EXPECTED.get(name) or outcome(lambda: CHANGED[name](torch)))


# -- bad indices in the forward; in-place ops lose nothing ------------------------------------------
FORWARD = {
    "gather": lambda T: (T.arange(3.0).gather(0, T.tensor([0, 10])),),
    "gather negative": lambda T: (T.zeros(2, 3).gather(1, T.tensor([[0, -5], [7, 1]])),),
    "gather 0-d self": lambda T: (T.tensor(2.0).gather(0, T.tensor(1)),),
    "gather into size 0": lambda T: (T.zeros(2, 0).gather(1, T.zeros(2, 1, dtype=T.long)),),
    "scatter": lambda T: (T.zeros(3).scatter(0, T.tensor([0, 10]), T.ones(2)),),
    "scatter value": lambda T: (T.zeros(2, 3).scatter(1, T.tensor([[0, 5], [7, 1]]), 1.0),),
    "scatter_add": lambda T: (T.zeros(3).scatter_add(0, T.tensor([-1, 0]), T.ones(2)),),
    "scatter reduce": lambda T: (T.zeros(3).scatter(0, T.tensor([9]), 1.0, reduce="multiply"),),
    "x[idx]": lambda T: (T.zeros(3, 3)[T.tensor([1, 2]), T.tensor([0, 5])],),
    "x[:, idx]": lambda T: (T.zeros(3, 3)[:, T.tensor([-4])],),
    "x[:, idx] of nothing": lambda T: (T.zeros(0, 3)[:, T.tensor([5])],),
    "index_put": lambda T: (T.zeros(3).index_put((T.tensor([0, 3]),), T.ones(2)),),
    "index_select": lambda T: (T.zeros(3).index_select(0, T.tensor([0, 3])),),
    "index_select of an empty 2-D": lambda T: (T.zeros(0, 3).index_select(1, T.tensor([1, 7, 9])),),
    "index_select along a size-0 dim": lambda T: (T.zeros(2, 0).index_select(1, T.tensor([0])),),
    "take": lambda T: (T.zeros(3).take(T.tensor([-4])),),
    "take from an empty tensor": lambda T: (T.zeros(0).take(T.tensor([0])),),
}


@pytest.mark.parametrize("name", list(FORWARD))
def test_forward_index_out_of_range(torch, name):
    same(torch, FORWARD[name])


INPLACE = {
    "scatter_": lambda x, T: x.scatter_(0, T.tensor([1, 10]), T.ones(2)),
    "scatter_ value": lambda x, T: x.scatter_(0, T.tensor([1, -9]), 4.0),
    "scatter_ reduce": lambda x, T: x.scatter_(0, T.tensor([1, 3]), 4.0, reduce="add"),
    "scatter_add_": lambda x, T: x.scatter_add_(0, T.tensor([2, 1, 3]), T.ones(3)),
    "index_put_": lambda x, T: x.index_put_((T.tensor([1, 3]),), T.ones(2), accumulate=True),
    "setitem": lambda x, T: x.__setitem__(T.tensor([0, 2, 5]), 7.0),
}


@pytest.mark.parametrize("recorded", [False, True])
@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_index_out_of_range_leaves_tensor_untouched(torch, name, recorded):
    """PyTorch raises the same error, but may have written part of the update first (its
    ``scatter_`` does); nbgrad checks every index before it writes any."""
    def attempt(T):
        leaf = T.tensor([1.0, 2.0, 3.0], requires_grad=recorded)
        x = leaf * 1 if recorded else leaf
        version = x._version
        return leaf, x, version, outcome(lambda: (INPLACE[name](x, T),))
    theirs = attempt(torch)[3]
    leaf, x, version, ours = attempt(nbgrad)
    assert ours == theirs and ours[0] == "raised"
    assert x.tolist() == [1.0, 2.0, 3.0] and x._version == version
    if recorded:
        x.sum().backward()
        assert leaf.grad.tolist() == [1.0, 1.0, 1.0]


def test_leaf_error_comes_before_the_index_error(torch):
    """The leaf check comes first in PyTorch (the index is checked by the kernel)."""
    for name in INPLACE:
        same(torch, lambda T: (INPLACE[name](T.zeros(3, requires_grad=True), T),))


# -- ranks and sizes of gather/scatter operands (item 6) ----------------------------------------------
L = "long"
SHAPES = {
    "scatter src 2-D, index 1-D": lambda T: T.zeros(5).scatter(0, T.tensor([0, 1]), T.ones(2, 2)),
    "scatter_add src 2-D, index 1-D": lambda T: T.zeros(5).scatter_add(0, T.tensor([0, 1]), T.ones(2, 2)),
    "scatter_ src 2-D": lambda T: T.zeros(5).scatter_(0, T.tensor([0, 1]), T.ones(2, 2)),
    "scatter_add_ src 2-D": lambda T: T.zeros(5).scatter_add_(0, T.tensor([0, 1]), T.ones(2, 2)),
    "scatter reduce src 2-D": lambda T: T.zeros(5).scatter(0, T.tensor([0, 1]), T.ones(2, 2), reduce="add"),
    "scatter src 3-D": lambda T: T.zeros(3, 3).scatter(0, T.zeros(2, 2, dtype=T.long), T.ones(2, 2, 2)),
    "scatter src 1-D, index and self 2-D": lambda T: T.zeros(3, 1).scatter(0, T.zeros(2, 2, dtype=T.long), T.ones(2)),
    "scatter src 0-d, index 2-D": lambda T: T.zeros(3, 3).scatter(0, T.zeros(1, 1, dtype=T.long), T.tensor(1.0)),
    "scatter src 2-D too small, index 1-D": lambda T: T.zeros(3).scatter(0, T.zeros(2, dtype=T.long), T.ones(1, 1)),
    "scatter index 2-D": lambda T: T.zeros(5).scatter(0, T.zeros(1, 1, dtype=T.long), T.ones(2)),
    "gather index 2-D": lambda T: T.zeros(5).gather(0, T.zeros(1, 1, dtype=T.long)),
    "gather index 1-D into 2-D": lambda T: T.zeros(5, 2).gather(0, T.tensor([0, 1])),
    "scatter index larger than self": lambda T: T.zeros(2, 2).scatter(0, T.zeros(2, 3, dtype=T.long), T.ones(2, 3)),
    "scatter index larger than src": lambda T: T.zeros(2, 3).scatter(0, T.zeros(2, 3, dtype=T.long), T.ones(2, 2)),
    "scatter_add index larger than src": lambda T: T.zeros(2, 3).scatter_add(0, T.zeros(3, 3, dtype=T.long),
                                                                             T.ones(2, 3)),
    "scatter value, index larger than self": lambda T: T.zeros(2, 2).scatter(0, T.zeros(2, 3, dtype=T.long), 1.0),
    "gather index larger than self": lambda T: T.zeros(2, 2).gather(0, T.zeros(2, 3, dtype=T.long)),
    "scatter src 0-d, index of 2": lambda T: T.zeros(5).scatter(0, T.tensor([0, 1]), T.tensor(3.0)),
    "scatter_add 0-d self, index of 2": lambda T: T.tensor(1.0).scatter_add(0, T.tensor([0, 0]), T.tensor(3.0)),
    "scatter_add dtypes": lambda T: T.zeros(3).scatter_add(0, T.zeros(2, dtype=T.long), T.ones(2, dtype=T.float64)),
    "scatter_ dtypes": lambda T: T.zeros(3).scatter_(0, T.zeros(2, dtype=T.long), T.ones(2, dtype=T.float64)),
    "gather float index": lambda T: T.zeros(3).gather(0, T.zeros(2)),
    "scatter_add float index": lambda T: T.zeros(3).scatter_add(0, T.zeros(2), T.ones(2)),
    "scatter bad dim before float index": lambda T: T.zeros(3).scatter(2, T.zeros(2), 1.0),
}


@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter")
@pytest.mark.parametrize("name", list(SHAPES))
def test_gather_scatter_shape_errors(torch, name):
    same(torch, lambda T: (SHAPES[name](T),))


EMPTY_INDEX = {
    "scatter, float index": lambda T: T.zeros(3).scatter(0, T.zeros(0), 1.0),
    "scatter, index of another rank": lambda T: T.zeros(3).scatter(0, T.zeros(0, 2, dtype=T.long), 1.0),
    "scatter_add, src of another rank": lambda T: T.zeros(3).scatter_add(0, T.zeros(0, 2, dtype=T.long),
                                                                         T.ones(5, 5, 5)),
    "gather, index of another rank": lambda T: T.zeros(3).gather(0, T.zeros(0, 2, dtype=T.long)),
    "gather, index larger than self": lambda T: T.zeros(3, 1).gather(0, T.zeros(0, 2, dtype=T.long)),
}


@pytest.mark.parametrize("name", list(EMPTY_INDEX))
def test_empty_index_skips_the_checks(torch, name):
    """PyTorch checks nothing but the dim (and src's dtype) for an empty index."""
    same(torch, lambda T: (EMPTY_INDEX[name](T),))


# -- 0-d operands (item 9) ------------------------------------------------------------------------------
def zero_d(op, x_shape, index_shape, src_shape, x_grad=True, src_grad=True):
    def program(T):
        x = T.full(x_shape, 2.0, requires_grad=x_grad)
        idx = T.zeros(index_shape, dtype=T.long)
        if op == "gather":
            y = x.gather(0, idx)
            src = None
        else:
            src = T.full(src_shape, 5.0, requires_grad=src_grad)
            y = getattr(x, op)(0, idx, src)
        (y * 3).sum().backward()
        return y, x.grad, None if src is None else src.grad
    return program


ZERO_D = [("scatter", (), (), ()), ("scatter", (), (1,), ()), ("scatter", (2,), (1,), ()),
          ("scatter", (2,), (), ()), ("scatter_add", (), (), ()), ("scatter_add", (), (1,), ()),
          ("scatter_add", (2,), (), ()), ("scatter_add", (1,), (1,), ()), ("gather", (), (), None),
          ("gather", (), (2,), None), ("gather", (1,), (), None)]


@pytest.mark.parametrize("op, x_shape, index_shape, src_shape", ZERO_D)
@pytest.mark.parametrize("grads", [(True, True), (True, False), (False, True)])
def test_zero_d_gather_scatter_match_torch(torch, op, x_shape, index_shape, src_shape, grads):
    if op == "gather" and not grads[0]:
        return
    same(torch, zero_d(op, x_shape, index_shape, src_shape, *grads))


@pytest.mark.parametrize("op", ["scatter", "scatter_add"])
@pytest.mark.parametrize("x_shape, index_shape, src_shape", [((), (), (2,)), ((2,), (), (2,)), ((), (1,), (3,)),
                                                             ((2,), (1,), (2,))])
def test_zero_d_index_with_larger_src_gradients(op, x_shape, index_shape, src_shape):
    """PyTorch rejects its own gradient here ("invalid gradient"); nbgrad's is the true one:
    only ``src[0]`` is read, so only it gets a gradient (checked by finite differences)."""
    idx = nbgrad.zeros(index_shape, dtype=nbgrad.long)
    check_grad(lambda x, s: getattr(x, op)(0, idx, s), np.full(x_shape, 2.0), np.arange(1.0, 1 + np.prod(src_shape))
               .reshape(src_shape))


# -- the kernels on their own ------------------------------------------------------------------------------
def test_dim_kernels_check_every_value():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((700, 400)).T                    # non-contiguous; 280k: the parallel loop
    index = rng.integers(0, 400, (400, 700))
    out = np.empty(index.shape)
    index_kernels.gather_dim(out, src, 1, index)
    np.testing.assert_array_equal(out, np.take_along_axis(src, index, 1))
    for bad in ((700,), (-1, 10**15), (-(2**63),)):
        broken = index.copy()
        broken.reshape(-1)[[250_000, 5][:len(bad)]] = bad
        first = broken.reshape(-1)[min(np.flatnonzero((broken < 0) | (broken >= 700)))]
        with pytest.raises(RuntimeError, match=f"^index {first} is out of bounds for dimension 1 with size 700$"):
            index_kernels.gather_dim(out, src, 1, broken)
        for reduce in (None, "add", "multiply"):
            dst = np.ones((400, 700))
            with pytest.raises(RuntimeError, match=f"^index {first} is out"):
                index_kernels.scatter_dim(dst, 1, broken, np.full(index.shape, 2.0), reduce, check_first=True)
            assert (dst == 1).all()


def test_plan_kernels_check_every_coordinate():
    src = np.arange(12.0).reshape(3, 4)
    coords = np.array([[0, 2, -3, 1], [1, 4, 0, -5]])
    p = index_kernels.plan(src, [0, 1], coords, (4,))
    assert p.bad == 2
    with pytest.raises(IndexError, match="^index 4 is out of bounds for dimension 1 with size 4$"):
        index_kernels.gather(np.empty(4), src, p)
    dst = src.copy()
    with pytest.raises(IndexError, match="^index 4 is out of bounds"):
        index_kernels.scatter(dst, np.ones(4), p, accumulate=True)
    np.testing.assert_array_equal(dst, src)
    index_kernels.gather(np.empty(0), src, index_kernels.plan(src, [0, 1], coords[:, :0], (0,)))
    big = np.zeros(PARALLEL_MIN + 5, np.int64)
    big[[7, PARALLEL_MIN + 1]] = [3, -4]
    p = index_kernels.plan(src, [0], big[None], big.shape)
    assert p.bad == 2 and str(p.error()) == "index 3 is out of bounds for dimension 0 with size 3"


def test_nll_kernels_check_every_target():
    grad = np.ones(1, np.float32)
    for target in (np.array([0, 3]), np.array([-1, 0]), np.array([0, 2**62])):
        with pytest.raises(IndexError, match=f"^Target {target[target != 0][0]} is out of bounds.$"):
            loss_kernels.nll_backward((2, 3), np.float32, target, None, grad, -100)
        with pytest.raises(IndexError, match=f"^Target {target[target != 0][0]} is out of bounds.$"):
            loss_kernels.nll_forward(np.zeros((2, 3), np.float32), target, None, -100)
    with pytest.raises(RuntimeError, match=r"^size mismatch \(got input: \[2, 3\], target: \[3\]\)$"):
        loss_kernels.nll_backward((2, 3), np.float32, np.zeros(3, np.int64), None, grad, -100)
    with pytest.raises(RuntimeError, match="^weight tensor should be defined either for all or no classes$"):
        loss_kernels.nll_forward(np.zeros((2, 3), np.float32), np.zeros(2, np.int64), np.ones(2, np.float32), -100)
    with pytest.raises(RuntimeError, match="^Expected a gradient of 1 or 2 elements, but got 3$"):
        loss_kernels.nll_backward((2, 3), np.float32, np.zeros(2, np.int64), None, np.ones(3, np.float32), -100)
    target = np.zeros(1024, np.int64)                             # 1024 x 300: the parallel loop
    target[[700, 900]] = [300, -5]
    with pytest.raises(IndexError, match="^Target 300 is out of bounds.$"):
        loss_kernels.nll_backward((1024, 300), np.float32, target, None, grad, -100)
