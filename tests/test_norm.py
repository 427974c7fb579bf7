"""Batch, layer and group norm against PyTorch: values, gradients of input and parameters,
running statistics, train/eval, second derivatives, node names, error texts, modules and
state dicts, and float64 finite-difference checks of first and second derivatives."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
import nbgrad.nn.functional as F
from helpers import assert_close, copy_state, random_array, same_error
from nbgrad.autograd import gradcheck, gradgradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-9, atol=1e-10)}


def check(torch, fn, x, params, seed=0, **kw):
    """``fn(lib)(x, *params)`` in both libraries: output, node name, and the gradients of the
    input and parameters (None entries stay None) for a random output gradient."""
    ours = [None if a is None else nbgrad.tensor(a, requires_grad=True) for a in [x, *params]]
    theirs = [None if a is None else torch.tensor(a, requires_grad=True) for a in [x, *params]]
    y, yt = fn(nbgrad)(*ours, **kw), fn(torch)(*theirs, **kw)
    t = TOL[x.dtype.type]
    assert_close(y.detach(), yt.detach(), **t)
    assert y.grad_fn.name() == yt.grad_fn.name()
    g = random_array(tuple(yt.shape), x.dtype, seed + 5)
    y.backward(nbgrad.tensor(g))
    yt.backward(torch.tensor(g))
    for a, e in zip(ours, theirs):
        assert_close(None if a is None else a.grad, None if e is None else e.grad, **t)


def bn(training, rm=None, rv=None):
    def make(lib):
        stats = [None if a is None else lib.tensor(a) for a in (rm, rv)]
        return lambda x, w, b: lib.nn.functional.batch_norm(x, *stats, w, b, training=training)
    return make


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (2, 3, 4, 5), (5, 2, 1, 1, 3)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(torch, shape, affine, training, dtype):
    c = shape[1]
    x = random_array(shape, dtype, 0) * 3 + 2                  # off-centre: the statistics matter
    params = [random_array((c,), dtype, 1), random_array((c,), dtype, 2)] if affine else [None, None]
    rm, rv = random_array((c,), dtype, 3), random_array((c,), dtype, 4, 0.5, 2.0)
    check(torch, bn(training, rm, rv), x, params)


def test_batch_norm_running_statistics(torch):
    """Updated in place as PyTorch does: momentum, unbiased variance, no version bump."""
    x = random_array((4, 3, 5), np.float64, 0) * 2 + 1
    stats = {}
    for lib in (nbgrad, torch):
        rm, rv = lib.zeros(3, dtype=lib.float64), lib.ones(3, dtype=lib.float64)
        v = rm._version
        lib.nn.functional.batch_norm(lib.tensor(x), rm, rv, training=True, momentum=0.3)
        assert rm._version == v
        stats[lib] = (rm, rv)
    for a, e in zip(stats[nbgrad], stats[torch]):
        assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_batch_norm_without_running_statistics(torch):
    check(torch, bn(True), random_array((3, 2, 4), np.float64, 0), [None, None])


@given(n=st.integers(2, 4), c=st.integers(1, 4), l_=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_batch_norm_random_shapes(torch, n, c, l_, seed):
    x = random_array((n, c, l_), np.float64, seed) * 5 - 3
    check(torch, bn(True, np.zeros(c), np.ones(c)), x, [random_array((c,), np.float64, seed + 1), None], seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,normalized", [((4, 5), (5,)), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 4)),
                                              ((3, 2, 2, 5), (2, 2, 5)), ((6,), (6,))])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm(torch, shape, normalized, affine, dtype):
    x = random_array(shape, dtype, 0) * 3 + 1
    w = random_array(normalized, dtype, 1) if affine != "none" else None
    b = random_array(normalized, dtype, 2) if affine == "both" else None
    check(torch, lambda lib: lambda x, w, b: lib.nn.functional.layer_norm(x, normalized, w, b), x, [w, b])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,groups", [((2, 6), 3), ((2, 6, 5), 2), ((3, 4, 2, 3), 4), ((1, 6, 3, 2), 1),
                                          ((2, 4, 1), 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(torch, shape, groups, affine, dtype):
    c = shape[1]
    x = random_array(shape, dtype, 0) * 2 - 1
    params = [random_array((c,), dtype, 1), random_array((c,), dtype, 2)] if affine else [None, None]
    check(torch, lambda lib: lambda x, w, b: lib.nn.functional.group_norm(x, groups, w, b), x, params)


def test_statistics_of_large_offsets_are_exact_enough(torch):
    """float32 values near 1e4: the shifted one-pass float64 statistics give the float64
    answer to float32 precision (PyTorch's float32 kernels are off by up to 1e-3 here)."""
    x = random_array((8, 2, 64), np.float32, 0) + 1e4
    for fn in (lambda lib, x: lib.nn.functional.batch_norm(x, None, None, training=True),
               lambda lib, x: lib.nn.functional.layer_norm(x, (64,))):
        exact = fn(torch, torch.tensor(x, dtype=torch.float64)).numpy()
        ours = fn(nbgrad, nbgrad.tensor(x)).numpy()
        np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-6)


FUNCTIONS = {
    "batch_norm train": lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
    "batch_norm eval": lambda x, w, b: F.batch_norm(x, nbgrad.tensor([0.1, -0.2, 0.3], dtype=nbgrad.float64),
                                                    nbgrad.tensor([1.5, 0.7, 1.1], dtype=nbgrad.float64), w, b),
    "layer_norm": lambda x, w, b: F.layer_norm(x, (3, 2), w.reshape(3, 1).expand(3, 2).contiguous(),
                                               b.reshape(3, 1).expand(3, 2) * 2),
    "group_norm": lambda x, w, b: F.group_norm(x, 3, w, b),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradcheck(name):
    inputs = [nbgrad.tensor(random_array(s, np.float64, i), requires_grad=True)
              for i, s in enumerate([(4, 3, 2), (3,), (3,)])]
    assert gradcheck(FUNCTIONS[name], inputs)
    assert gradgradcheck(FUNCTIONS[name], inputs)


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm", "group_norm"])
def test_second_derivatives_as_torch(torch, name):
    x, w, b = random_array((4, 3, 2), np.float64, 0), random_array((3,), np.float64, 1), \
        random_array((3,), np.float64, 2)
    grads = []
    for lib in (nbgrad, torch):
        ts = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
        f = lib.nn.functional
        if name == "batch_norm":
            y = f.batch_norm(ts[0], None, None, ts[1], ts[2], True)
        elif name == "layer_norm":
            y = f.layer_norm(ts[0].transpose(1, 2), (3,), ts[1], ts[2])
        else:
            y = f.group_norm(ts[0], 3, ts[1], ts[2])
        gs = lib.autograd.grad((y ** 3).sum(), ts, create_graph=True)
        sum((g * g).sum() for g in gs).backward()
        grads.append([t.grad for t in ts])
    for a, e in zip(*grads):
        assert_close(a, e, rtol=1e-8, atol=1e-9)


ERRORS = [
    lambda F, t: F.batch_norm(t.randn(1, 3), t.zeros(3), t.ones(3), training=True),
    lambda F, t: F.batch_norm(t.randn(4, 3), t.zeros(4), t.ones(3), training=True),
    lambda F, t: F.batch_norm(t.randn(4, 3), t.zeros(3), t.ones(4), training=True),
    lambda F, t: F.batch_norm(t.randn(4, 3), t.zeros(3), t.ones(3), t.ones(4), training=True),
    lambda F, t: F.batch_norm(t.randn(4, 3), t.zeros(3), t.ones(3), None, t.ones(4), training=True),
    lambda F, t: F.batch_norm(t.randn(4, 3), None, None, training=False),
    lambda F, t: F.layer_norm(t.randn(4, 3, 5), (4,)),
    lambda F, t: F.layer_norm(t.randn(4, 3, 5), (3, 5), t.ones(3)),
    lambda F, t: F.layer_norm(t.randn(4, 3, 5), (3, 5), t.ones(3, 5), t.ones(3)),
    lambda F, t: F.group_norm(t.randn(4, 3, 5), 2),
    lambda F, t: F.group_norm(t.randn(4, 3, 5), 3, t.ones(2)),
    lambda F, t: F.group_norm(t.randn(3), 3),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_errors_as_torch(torch, i):
    same_error(torch, lambda lib: ERRORS[i](lib.nn.functional, lib))


MODULE_ERRORS = [
    lambda nn, t: nn.BatchNorm1d(3)(t.randn(4, 3, 2, 2)),
    lambda nn, t: nn.BatchNorm2d(3)(t.randn(4, 3, 2)),
    lambda nn, t: nn.BatchNorm1d(3)(t.randn(4)),
    lambda nn, t: nn.GroupNorm(2, 3),
]


@pytest.mark.parametrize("i", range(len(MODULE_ERRORS)))
def test_module_errors_as_torch(torch, i):
    same_error(torch, lambda lib: MODULE_ERRORS[i](lib.nn, lib))


@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.BatchNorm1d(3), (4, 3)),
    (lambda nn: nn.BatchNorm1d(3, momentum=None), (4, 3, 5)),
    (lambda nn: nn.BatchNorm2d(3, affine=False), (4, 3, 2, 2)),
    (lambda nn: nn.BatchNorm2d(3, track_running_stats=False), (4, 3, 2, 2)),
    (lambda nn: nn.BatchNorm2d(3, momentum=0.5, bias=False), (4, 3, 2, 2)),
    (lambda nn: nn.LayerNorm((3, 5)), (2, 3, 5)),
    (lambda nn: nn.LayerNorm(5, elementwise_affine=False, bias=False), (2, 3, 5)),
    (lambda nn: nn.LayerNorm(5, bias=False), (2, 3, 5)),
    (lambda nn: nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda nn: nn.GroupNorm(1, 4, affine=False), (2, 4, 3, 3)),
])
def test_modules_over_train_and_eval(torch, make, shape):
    """Three training steps then eval: outputs, parameter gradients, buffers and state dict keys."""
    ours, theirs = make(nbgrad.nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    copy_state(ours, theirs)
    for step in range(4):
        if step == 3:
            ours.eval(), theirs.eval()
        x = random_array(shape, np.float32, step) * (step + 1) + step
        y = ours(nbgrad.tensor(x, requires_grad=True))
        yt = theirs(torch.tensor(x, requires_grad=True))
        assert_close(y.detach(), yt.detach(), rtol=1e-4, atol=1e-5)
        (y * y).sum().backward()
        (yt * yt).sum().backward()
    for p, pt in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad, pt.grad, rtol=1e-4, atol=1e-3)
    for (k, v), (kt, vt) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == kt
        assert_close(v, vt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm", "group_norm"])
def test_empty_batch(torch, name):
    """No samples: an empty output and gradient, running statistics untouched, as in PyTorch."""
    results = []
    for lib in (nbgrad, torch):
        x = lib.zeros(0, 4, 3, requires_grad=True)
        rm, rv = lib.zeros(4), lib.ones(4)
        f = lib.nn.functional
        y = {"batch_norm": lambda: f.batch_norm(x, rm, rv, training=True),
             "layer_norm": lambda: f.layer_norm(x, (3,)), "group_norm": lambda: f.group_norm(x, 2)}[name]()
        y.sum().backward()
        results.append((tuple(y.shape), tuple(x.grad.shape), rm.tolist(), rv.tolist()))
    assert results[0] == results[1]


@pytest.mark.parametrize("name", ["batch_norm", "group_norm"])
def test_saved_weight_replaced_through_data_is_refused(name):
    x = nbgrad.randn(2, 4, 3, requires_grad=True)
    w = nbgrad.randn(4, requires_grad=True)
    y = F.batch_norm(x, None, None, w, None, True) if name == "batch_norm" else F.group_norm(x, 2, w)
    w.data = nbgrad.randn(9)
    with pytest.raises(RuntimeError, match="replaced through .data"):
        y.sum().backward()
