"""``nll_loss`` as one recorded op (and ``cross_entropy`` = ``log_softmax`` + it): values,
gradients, graph nodes and error texts against PyTorch, and finite-difference checks of
the first and second derivatives."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
import nbgrad.nn.functional as F
from helpers import assert_close, nb, random_array, same_error, to_torch, with_layout
from nbgrad.autograd import gradcheck, gradgradcheck

SHAPES = [(5,), (4, 5), (4, 5, 3), (3, 5, 2, 2), (2, 5, 3, 1, 2), (0, 5), (0, 5, 3)]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def graph(fn, depth=0):
    """The backward graph below ``fn`` as nested (name, children), leaves named alike in both libraries."""
    if fn is None:
        return None
    name = fn.name().replace("torch::autograd::", "")
    return name, [graph(f, depth + 1) for f, _ in fn.next_functions]


def case(shape, dtype, seed, ignore=None, weighted=False):
    """Input (log-probabilities), target (classes 0..C-1, every third one ``ignore``) and weight."""
    rng = np.random.default_rng(seed)
    c = shape[0] if len(shape) == 1 else shape[1]
    x = random_array(shape, dtype, seed)
    target = rng.integers(0, c, shape[:1] + shape[2:] if len(shape) > 1 else ()).astype(np.int64)
    if ignore is not None and target.size > 1:
        target.reshape(-1)[::3] = ignore
    weight = random_array((c,), dtype, seed + 1, 0.5, 2.0) if weighted else None
    return x, target, weight


def both(fn_name, x, target, weight, layout="contiguous", **kw):
    """Loss and input gradient (for a random output gradient) in nbgrad and torch."""
    import torch
    xn = nb(with_layout(x, layout), requires_grad=True)
    # the same layout in torch, whose 4-D backward refuses a non-contiguous input (nbgrad's reads it in place)
    xt = torch.from_numpy(with_layout(x, layout if x.ndim != 4 else "contiguous")).requires_grad_(True)
    results = []
    for lib, xl, conv in ((nbgrad, xn, nbgrad.tensor), (torch, xt, to_torch)):
        w = None if weight is None else conv(weight)
        loss = getattr(lib.nn.functional, fn_name)(xl, conv(target), weight=w, **kw)
        results.append(loss)
    loss, loss_t = results
    g = random_array(tuple(loss_t.shape), x.dtype, 5)
    loss.backward(nb(g))
    loss_t.backward(to_torch(g))
    return loss, loss_t, xn.grad, xt.grad


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fn_name", ["nll_loss", "cross_entropy"])
def test_matches_torch(torch, fn_name, shape, reduction, dtype, layout):
    for ignore, weighted in [(None, False), (2, True)]:
        x, target, weight = case(shape, dtype, 3, ignore, weighted)
        kw = dict(reduction=reduction) if ignore is None else dict(reduction=reduction, ignore_index=ignore)
        loss, loss_t, grad, grad_t = both(fn_name, x, target, weight, layout, **kw)
        assert_close(loss, loss_t, atol=1e-5 if dtype == np.float32 else None)
        assert_close(grad, grad_t)
        assert graph(loss.grad_fn) == graph(loss_t.grad_fn)


def test_graph_is_one_node_after_log_softmax(torch):
    x = nbgrad.randn(4, 5, requires_grad=True)
    fn = F.cross_entropy(x, nbgrad.tensor([0, 1, 2, 3])).grad_fn
    assert fn.name() == "NllLossBackward0"
    assert [f.name() for f, _ in fn.next_functions] == ["LogSoftmaxBackward0"]
    assert fn.next_functions[0][0].next_functions[0][0].name() == "AccumulateGrad"
    fn = F.cross_entropy(nbgrad.randn(2, 5, 3, 4, requires_grad=True), nbgrad.zeros(2, 3, 4, dtype=nbgrad.int64))
    assert fn.grad_fn.name() == "NllLoss2DBackward0"


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 2, 2)], ids=str)
def test_all_ignored_mean_is_nan_with_zero_gradient(torch, shape, weighted):
    x, target, weight = case(shape, np.float64, 1, weighted=weighted)
    target[...] = 1
    for reduction in ("mean", "sum", "none"):
        loss, loss_t, grad, grad_t = both("nll_loss", x, target, weight, ignore_index=1, reduction=reduction)
        assert_close(loss, loss_t)            # NaNs compare equal here
        assert_close(grad, grad_t)
        assert (grad.numpy() == 0).all()
        assert np.isnan(loss.item()) if reduction == "mean" else (loss.detach().numpy() == 0).all()


@pytest.mark.parametrize("shape", [(0, 5), (0, 5, 3), (0, 5, 2, 2), (2, 5, 0)], ids=str)
def test_empty_batch(torch, shape):
    for reduction in ("mean", "sum", "none"):
        x, target, _ = case(shape, np.float32, 0)
        loss, loss_t, grad, grad_t = both("cross_entropy", x, target, None, reduction=reduction)
        assert_close(loss, loss_t)
        assert_close(grad, grad_t)


@pytest.mark.parametrize("shape", [(700, 400), (40, 30, 25, 10)], ids=str)
def test_large_inputs_take_the_parallel_kernel(torch, shape):
    x, target, weight = case(shape, np.float32, 4, ignore=7, weighted=True)
    for reduction in ("mean", "none"):
        loss, loss_t, grad, grad_t = both("nll_loss", x, target, weight, ignore_index=7, reduction=reduction)
        assert_close(loss, loss_t, rtol=1e-5, atol=1e-4)
        assert_close(grad, grad_t)


def test_sum_of_none_reduction_gets_a_broadcast_gradient(torch):
    x, target, weight = case((6, 4), np.float64, 2, weighted=True)
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    F.nll_loss(xn, nb(target), weight=nb(weight), reduction="none").sum().backward()
    torch.nn.functional.nll_loss(xt, to_torch(target), weight=to_torch(weight), reduction="none").sum().backward()
    assert_close(xn.grad, xt.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 5, 2), (2, 5, 2, 3)], ids=str)
def test_gradcheck_and_gradgradcheck(shape, reduction):
    for ignore, weighted in [(None, False), (1, True)]:
        x, target, weight = case(shape, np.float64, 7, ignore, weighted)
        if ignore is not None and len(shape) == 1:
            target[...] = 3
        kw = dict(reduction=reduction, weight=None if weight is None else nb(weight))
        if ignore is not None:
            kw["ignore_index"] = ignore
        for fn in (F.nll_loss, F.cross_entropy):
            f = lambda t: fn(t, nb(target), **kw)  # noqa: E731
            assert gradcheck(f, (nb(x, requires_grad=True),))
            assert gradgradcheck(f, (nb(x, requires_grad=True),))


@pytest.mark.parametrize("shape", [(4, 5), (3, 5, 2, 2)], ids=str)
def test_create_graph_matches_torch(torch, shape):
    x, target, weight = case(shape, np.float64, 9, ignore=0, weighted=True)
    results = []
    for lib, conv in ((nbgrad, nb), (torch, to_torch)):
        xl = conv(x, requires_grad=True)
        loss = lib.nn.functional.nll_loss(xl, conv(target), weight=conv(weight), ignore_index=0)
        g, = lib.autograd.grad(loss * 3, xl, create_graph=True)
        names = graph(g.grad_fn)
        gg, = lib.autograd.grad((g * g).sum(), xl)                 # d/dx of a function of g only: zero
        xl2 = conv(x, requires_grad=True)
        ce = lib.nn.functional.cross_entropy(xl2, conv(target), weight=conv(weight), ignore_index=0)
        g2, = lib.autograd.grad(ce, xl2, create_graph=True)
        h, = lib.autograd.grad((g2 * g2).sum(), xl2)              # through log_softmax: not zero
        results.append((names, g, gg, h))
    (names, g, gg, h), (names_t, g_t, gg_t, h_t) = results
    assert names == names_t
    assert names[0] == ("NllLossBackwardBackward0" if len(shape) == 2 else "NllLoss2DBackwardBackward0")
    assert_close(g, g_t)
    assert_close(gg, gg_t)
    assert_close(h, h_t)
    assert np.abs(h.numpy()).sum() > 0


def test_third_order_is_one_node_per_order():
    x = nb(random_array((3, 4), np.float64, 0), requires_grad=True)
    t = nbgrad.tensor([0, 1, 3])
    loss = F.nll_loss(x, t, reduction="none")
    v = nbgrad.ones(3, dtype=nbgrad.float64, requires_grad=True)
    g, = nbgrad.autograd.grad(loss, x, grad_outputs=v, create_graph=True)
    assert g.grad_fn.name() == "NllLossBackwardBackward0"
    w = nb(random_array((3, 4), np.float64, 1), requires_grad=True)
    gv, = nbgrad.autograd.grad((g * w).sum(), v, create_graph=True)   # nll_loss of w, per row
    assert gv.grad_fn.name() == "NllLossBackward0"
    gw, = nbgrad.autograd.grad(gv.sum(), w)
    assert_close(gw, -np.eye(4)[t.numpy()])
    assert_close(gv, -w.detach().numpy()[np.arange(3), t.numpy()])


def test_out_of_bounds_target(torch):
    for shape, bad in [((4, 5), 1000), ((4, 5), -1), ((5,), 7), ((2, 5, 3, 2), 5), ((2, 5, 3), -3)]:
        x, target, _ = case(shape, np.float32, 0)
        target.reshape(-1)[-1] = bad
        for fn in ("nll_loss", "cross_entropy"):
            same_error(torch, lambda lib: getattr(lib.nn.functional, fn)(lib.tensor(x), lib.tensor(target)))
    assert str(pytest.raises(IndexError, F.nll_loss, nbgrad.zeros(2, 1000),
                             nbgrad.tensor([0, 1000])).value) == "Target 1000 is out of bounds."
    # an ignored target may be any value
    x, target, _ = case((4, 5), np.float32, 0)
    target[0] = -7
    assert_close(F.nll_loss(nb(x), nb(target), ignore_index=-7),
                 torch.nn.functional.nll_loss(to_torch(x), to_torch(target), ignore_index=-7))


L = "int64"
ERRORS = [
    ("nll_loss", (4, 5), ((4, 2), L), None, {}),
    ("nll_loss", (5,), ((4,), L), None, {}),
    ("nll_loss", (5,), ((3,), "float32"), None, {}),
    ("nll_loss", (4, 5), ((4,), "float32"), (3,), {}),
    ("nll_loss", (4, 5), ((4,), L), (3,), {}),
    ("nll_loss", (4, 5), ((4,), L), (5, 1), {}),
    ("nll_loss", (4, 5), ((4,), L), "float64", {}),
    ("nll_loss", (4, 5), ((3,), L), None, {}),
    ("nll_loss", (), ((), L), None, {}),
    ("nll_loss", (4, 5, 3), ((4, 2), L), None, {}),
    ("nll_loss", (4, 5, 3), ((4,), L), None, {}),
    ("nll_loss", (4, 5, 3, 2), ((4, 3), L), None, {}),
    ("nll_loss", (4, 5, 3, 2), ((4, 3, 2), "float32"), (3,), {}),
    ("nll_loss", (4, 5, 3, 2), ((4, 3, 1), L), None, {}),
    ("nll_loss", (4, 5, 3, 2), ((4, 3, 1), L), (3,), {}),
    ("nll_loss", (4, 5, 3, 2), ((4, 3, 2), L), "float64", {}),
    ("nll_loss", (4, 5), ((4,), L), None, dict(reduction="avg")),
    ("cross_entropy", (4, 5), ((4,), "float32"), None, {}),
    ("cross_entropy", (4, 5), ((4, 5), L), None, {}),
    ("cross_entropy", (4, 5), ((4, 5), "float32"), None, dict(ignore_index=0)),
    ("cross_entropy", (4, 5), ((4, 5), "float32"), (3,), {}),
    ("cross_entropy", (4, 5), ((4, 5), "float32"), None, dict(label_smoothing=1.5)),
    ("cross_entropy", (4, 5), ((4,), L), None, dict(label_smoothing=1.5)),
    ("cross_entropy", (4, 5), ((4,), L), (3,), dict(label_smoothing=0.1)),
    ("cross_entropy", (4, 5, 3), ((4, 2), L), None, dict(label_smoothing=0.1)),
]


@pytest.mark.parametrize("fn,shape,target,weight,kw", ERRORS, ids=str)
def test_errors_match_torch(torch, fn, shape, target, weight, kw):
    def call(lib):
        x = lib.ones(shape)
        t = lib.zeros(target[0], dtype=getattr(lib, target[1]))
        w = None if weight is None else lib.ones(5, dtype=lib.float64) if weight == "float64" else lib.ones(weight)
        return getattr(lib.nn.functional, fn)(x, t, weight=w, **kw)
    same_error(torch, call)


def test_long_input_is_not_implemented(torch):
    for shape, tshape in [((4, 5), (4,)), ((4, 5, 2, 2), (4, 2, 2))]:
        same_error(torch, lambda lib: lib.nn.functional.nll_loss(lib.ones(shape, dtype=lib.int64),
                                                                 lib.zeros(tshape, dtype=lib.int64)))


def test_weight_is_not_differentiable(torch):
    for shape, tshape in [((4, 5), (4,)), ((4, 5, 2), (4, 2)), ((4, 5, 2, 2), (4, 2, 2))]:
        def call(lib):
            return lib.nn.functional.nll_loss(lib.ones(shape, requires_grad=True), lib.zeros(tshape, dtype=lib.int64),
                                              weight=lib.ones(5, requires_grad=True))
        same_error(torch, call)
        with nbgrad.no_grad():              # PyTorch allows it where nothing is recorded
            call(nbgrad)


def test_target_changed_in_place_before_backward(torch):
    def call(lib):
        x = lib.ones(4, 5, requires_grad=True)
        t = lib.zeros(4, dtype=lib.int64)
        loss = lib.nn.functional.nll_loss(x, t)
        t.add_(1)
        loss.backward()
    same_error(torch, call)


def test_unbatched_input_with_one_element_target(torch):
    x = random_array((5,), np.float64, 0)
    for reduction in ("mean", "none"):
        loss = F.nll_loss(nb(x), nbgrad.tensor([3]), reduction=reduction)
        loss_t = torch.nn.functional.nll_loss(to_torch(x), torch.tensor([3]), reduction=reduction)
        assert_close(loss, loss_t)


@given(n=st.integers(0, 4), c=st.integers(1, 5), spatial=st.lists(st.integers(1, 3), max_size=3),
       reduction=st.sampled_from(["mean", "sum", "none"]), weighted=st.booleans(), ignore=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_hypothesis_shapes_match_torch(torch, n, c, spatial, reduction, weighted, ignore, seed):
    shape = (n, c, *spatial)
    x, target, weight = case(shape, np.float64, seed, 0 if ignore else None, weighted)
    kw = dict(reduction=reduction, ignore_index=0) if ignore else dict(reduction=reduction)
    loss, loss_t, grad, grad_t = both("cross_entropy", x, target, weight, **kw)
    assert_close(loss, loss_t)
    assert_close(grad, grad_t)
    assert graph(loss.grad_fn) == graph(loss_t.grad_fn)
