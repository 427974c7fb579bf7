"""``conv1d``/``conv2d`` and ``Conv1d``/``Conv2d`` against PyTorch with the same weights: values,
gradients of input, weight and bias, second derivatives, graph nodes, error texts, and float64
finite-difference checks of the first and second derivatives."""
import math

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


TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-9, atol=1e-10)}


def run_both(torch, nd, x, w, b, seed, **kw):
    """Forward in both libraries, then backward of a random output gradient; returns the
    outputs and the three gradients of each."""
    name = f"conv{nd}d"
    ours = [None if a is None else nbgrad.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs = [None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = getattr(F, name)(*ours, **kw)
    yt = getattr(torch.nn.functional, name)(*theirs, **kw)
    g = random_array(tuple(yt.shape), x.dtype, seed + 7)
    y.backward(nbgrad.tensor(g))
    yt.backward(torch.tensor(g))
    grads = [None if a is None else a.grad for a in ours]
    grads_t = [None if a is None else a.grad for a in theirs]
    return y, yt, grads, grads_t


def check(torch, nd, x, w, b, seed, **kw):
    y, yt, grads, grads_t = run_both(torch, nd, x, w, b, seed, **kw)
    t = TOL[x.dtype.type]
    assert_close(y.detach(), yt.detach(), **t)
    assert y.grad_fn.name() == yt.grad_fn.name()
    for a, e in zip(grads, grads_t):
        assert_close(a, e, **t)


CASES_2D = [
    # (N, C, H, W), (O, kh, kw), options
    ((2, 3, 7, 6), (4, 3, 3), dict()),
    ((2, 3, 7, 6), (4, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 9, 8), (6, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
    ((3, 6, 6, 6), (6, 3, 3), dict(groups=6, padding="same")),
    ((2, 2, 5, 7), (3, 2, 4), dict(padding="same", dilation=(2, 1))),          # asymmetric 'same'
    ((2, 2, 5, 5), (3, 5, 5), dict(padding="valid")),
    ((2, 3, 8, 8), (4, 1, 1), dict(stride=3)),
    ((0, 3, 5, 5), (4, 3, 3), dict()),                                          # empty batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", range(len(CASES_2D)))
def test_conv2d_matches_torch(torch, case, bias, dtype):
    shape, (o, kh, kw), opts = CASES_2D[case]
    groups = opts.get("groups", 1)
    x = random_array(shape, dtype, case)
    w = random_array((o, shape[1] // groups, kh, kw), dtype, case + 1)
    b = random_array((o,), dtype, case + 2) if bias else None
    check(torch, 2, x, w, b, case, **opts)


CASES_1D = [
    ((2, 3, 9), (4, 3), dict()),
    ((2, 4, 9), (6, 2), dict(stride=2, padding=1, dilation=2, groups=2)),
    ((1, 2, 6), (3, 4), dict(padding="same")),
    ((3, 2, 10), (2, 3), dict(stride=(3,), padding=(2,))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES_1D)))
def test_conv1d_matches_torch(torch, case, dtype):
    shape, (o, k), opts = CASES_1D[case]
    groups = opts.get("groups", 1)
    x = random_array(shape, dtype, case)
    w = random_array((o, shape[1] // groups, k), dtype, case + 1)
    check(torch, 1, x, w, random_array((o,), dtype, case + 2), case, **opts)


@given(n=st.integers(1, 3), cg=st.integers(1, 3), og=st.integers(1, 3), groups=st.integers(1, 2),
       h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), seed=st.integers(0, 2 ** 16))
def test_conv2d_random_options(torch, n, cg, og, groups, h, w, kh, kw, stride, padding, dilation, seed):
    if any(s + 2 * p < d * (k - 1) + 1 for s, p, d, k in zip((h, w), padding, dilation, (kh, kw))):
        return                                          # kernel larger than the padded input: an error case
    x = random_array((n, cg * groups, h, w), np.float64, seed)
    wt = random_array((og * groups, cg, kh, kw), np.float64, seed + 1)
    check(torch, 2, x, wt, random_array((og * groups,), np.float64, seed + 2), seed, stride=stride,
          padding=padding, dilation=dilation, groups=groups)


def test_noncontiguous_and_unbatched_input(torch):
    x = random_array((3, 8, 7, 2), np.float64, 0).transpose(3, 0, 2, 1)       # (2, 3, 7, 8), strided
    w = random_array((4, 3, 3, 3), np.float64, 1)
    check(torch, 2, x, w, None, 0, padding=1)
    y, yt, grads, grads_t = run_both(torch, 2, x[0], w, None, 1)               # (C, H, W)
    assert y.shape == yt.shape and y.grad_fn.name() == yt.grad_fn.name() == "SqueezeBackward1"
    assert_close(grads[0], grads_t[0], **TOL[np.float64])


@pytest.mark.parametrize("nd,kw", [(2, dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)),
                                   (1, dict(stride=2, padding=1, groups=2))])
def test_double_backward_matches_torch(torch, nd, kw):
    """The gradients taken with ``create_graph`` are recorded (ConvolutionBackwardBackward0)
    and differentiate again as PyTorch's do."""
    spatial = (5, 6) if nd == 2 else (7,)
    k = (3, 2) if nd == 2 else (3,)
    x = random_array((2, 4, *spatial), np.float64, 0)
    w = random_array((6, 2, *k), np.float64, 1)
    b = random_array((6,), np.float64, 2)
    results = []
    for lib in (nbgrad, torch):
        ts = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = getattr(lib.nn.functional, f"conv{nd}d")(*ts, **kw)
        gs = lib.autograd.grad((y * y).sum(), ts, create_graph=True)
        names = [g.grad_fn.name() for g in gs]
        sum((g * g).sum() for g in gs).backward()
        results.append((names, [t.grad for t in ts]))
    assert results[0][0][:2] == results[1][0][:2] == ["ConvolutionBackwardBackward0"] * 2
    for a, e in zip(results[0][1], results[1][1]):
        assert_close(a, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding="same", groups=2),
                                dict(stride=(1, 2), padding=(0, 1), groups=4)])
def test_gradcheck_conv2d(kw):
    x = nbgrad.tensor(random_array((2, 4, 5, 5), np.float64, 0), requires_grad=True)
    w = nbgrad.tensor(random_array((4, 4 // kw.get("groups", 1), 3, 2), np.float64, 1), requires_grad=True)
    b = nbgrad.tensor(random_array((4,), np.float64, 2), requires_grad=True)
    fn = lambda x, w, b: F.conv2d(x, w, b, **kw)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def test_gradcheck_conv1d():
    x = nbgrad.tensor(random_array((2, 2, 7), np.float64, 0), requires_grad=True)
    w = nbgrad.tensor(random_array((3, 2, 3), np.float64, 1), requires_grad=True)
    fn = lambda x, w: F.conv1d(x, w, stride=2, padding=2, dilation=2)  # noqa: E731
    assert gradcheck(fn, (x, w))
    assert gradgradcheck(fn, (x, w))


def test_graph_and_only_needed_gradients(torch):
    x = nbgrad.tensor(random_array((2, 3, 5, 5), np.float32, 0))
    w = nbgrad.tensor(random_array((4, 3, 3, 3), np.float32, 1), requires_grad=True)
    y = F.conv2d(x, w)
    assert y.grad_fn.name() == "ConvolutionBackward0"
    assert [f is None for f, _ in y.grad_fn.next_functions] == [True, False, True]
    y.sum().backward()
    assert x.grad is None and w.grad.shape == w.shape


def test_input_changed_in_place_after_use_is_caught():
    x = nbgrad.tensor(random_array((1, 1, 4, 4), np.float64, 0), requires_grad=True)
    w = nbgrad.tensor(random_array((1, 1, 3, 3), np.float64, 1), requires_grad=True)
    h = x * 1
    y = F.conv2d(h, w)
    with nbgrad.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


ERRORS = [
    lambda F, t: F.conv2d(t.randn(2, 3), t.randn(4, 3, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 4, 8, 8), t.randn(4, 3, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), t.randn(3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), stride=0),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), padding=-1),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), dilation=0),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), groups=0),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), groups=2),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 1, 3, 3), groups=3),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), stride=2, padding="same"),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), padding="foo"),
    lambda F, t: F.conv2d(t.randn(2, 3, 2, 2), t.randn(4, 3, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3), stride=(1, 2, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 8, 8), t.randn(4, 3, 3, 3, dtype=t.float64)),
    lambda F, t: F.conv1d(t.randn(2, 3, 2, 2), t.randn(4, 3, 3)),
    lambda F, t: F.conv1d(t.randn(2, 3, 2), t.randn(4, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 5, 5), t.randn(0, 3, 3, 3)),
    lambda F, t: F.conv2d(t.randn(2, 3, 5, 5), t.randn(4, 3, 3, 3), t.randn(4, dtype=t.float64)),
    lambda F, t: F.conv2d(t.randn(2, 4, 5, 5), t.randn(2, 1, 3, 3), groups=4),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_errors_as_torch(torch, i):
    same_error(torch, lambda lib: ERRORS[i](lib.nn.functional, lib))


MODULE_ERRORS = [
    lambda nn: nn.Conv2d(3, 4, 3, groups=2),
    lambda nn: nn.Conv2d(4, 3, 3, groups=2),
    lambda nn: nn.Conv2d(4, 4, 3, groups=0),
    lambda nn: nn.Conv1d(4, 4, 3, padding="same", stride=2),
]


@pytest.mark.parametrize("i", range(len(MODULE_ERRORS)))
def test_module_errors_as_torch(torch, i):
    same_error(torch, lambda lib: MODULE_ERRORS[i](lib.nn))


def test_module_errors_that_print_a_set():
    """PyTorch prints a set here, whose order changes with the string hash seed: same words, same set."""
    with pytest.raises(ValueError) as e:
        nbgrad.nn.Conv2d(3, 4, 3, padding_mode="foo")
    head, rest = str(e.value).split("{")
    items, tail = rest.split("}")
    assert head == "padding_mode must be one of " and tail == ", but got padding_mode='foo'"
    assert set(items.split(", ")) == {"'zeros'", "'reflect'", "'replicate'", "'circular'"}
    with pytest.raises(ValueError, match=r"^Invalid padding string 'foo', should be one of \{'same', 'valid'\}$"):
        nbgrad.nn.Conv2d(4, 4, 3, padding="foo")


@pytest.mark.parametrize("make", [
    lambda nn: nn.Conv2d(1, 8, 3),
    lambda nn: nn.Conv2d(2, 8, (3, 5), stride=2, padding=1, dilation=2, groups=2, bias=False),
    lambda nn: nn.Conv1d(2, 4, 3, padding="same"),
    lambda nn: nn.Conv1d(4, 4, 2, stride=2, groups=4),
])
def test_modules_match_torch(torch, make):
    ours, theirs = make(nbgrad.nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    copy_state(ours, theirs)
    shape = (2, ours.in_channels, 9, 9) if isinstance(ours, nbgrad.nn.Conv2d) else (2, ours.in_channels, 9)
    x = random_array(shape, np.float32, 0)
    y, yt = ours(nbgrad.tensor(x)), theirs(torch.tensor(x))
    assert_close(y.detach(), yt.detach(), **TOL[np.float32])
    y.sum().backward()
    yt.sum().backward()
    for p, pt in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad, pt.grad, **TOL[np.float32])


def test_default_init_is_pytorchs():
    """Weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5))."""
    nbgrad.manual_seed(0)
    conv = nbgrad.nn.Conv2d(4, 64, 3, groups=2)
    bound = 1 / math.sqrt(2 * 3 * 3)
    for p in (conv.weight, conv.bias):
        v = p.detach().numpy()
        assert v.min() >= -bound and v.max() <= bound
        assert v.max() > 0.8 * bound and v.min() < -0.8 * bound     # spread over the range
    assert conv.weight.shape == (64, 2, 3, 3)


def test_padding_modes_other_than_zeros_are_refused():
    with pytest.raises(NotImplementedError, match="zeros"):
        nbgrad.nn.Conv2d(2, 2, 3, padding_mode="reflect")


def _cnn(nn):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, groups=2), nn.GroupNorm(3, 6), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
                         nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.LayerNorm(24), nn.Linear(24, 5))


def test_small_cnn_training_steps_match_torch(torch):
    """Conv, pooling and normalisation layers together: three SGD steps from the same weights
    give the same losses, gradients and running statistics as PyTorch (float64)."""
    ours, theirs = _cnn(nbgrad.nn).double(), _cnn(torch.nn).double()
    copy_state(ours, theirs)
    x = random_array((8, 1, 12, 12), np.float64, 0)
    y = np.random.default_rng(0).integers(0, 5, 8)
    opt = nbgrad.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for model, o, lib in ((ours, opt, nbgrad), (theirs, opt_t, torch)):
            o.zero_grad()
            loss = lib.nn.functional.cross_entropy(model(lib.tensor(x)), lib.tensor(y))
            loss.backward()
            o.step()
            model.loss = loss.item()
        assert ours.loss == pytest.approx(theirs.loss, rel=1e-10)
    for (k, v), (kt, vt) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == kt
        assert_close(v, vt, rtol=1e-8, atol=1e-10)


def test_cnn_step_workload_runs(torch):
    from benchmarks.workloads import WORKLOADS
    for lib in (nbgrad, torch):
        run = WORKLOADS["cnn_step"].make(lib)
        run()
        run()


def test_node_attributes_are_pytorchs(torch):
    """What make_dot(show_attrs=True) lists: the same values as PyTorch's node saves."""
    x, w = nbgrad.randn(1, 4, 6, 6, requires_grad=True), nbgrad.randn(4, 2, 3, 3)
    fn = F.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2).grad_fn
    fn_t = torch.nn.functional.conv2d(torch.randn(1, 4, 6, 6, requires_grad=True), torch.randn(4, 2, 3, 3),
                                      stride=(2, 1), padding=1, dilation=(1, 2), groups=2).grad_fn
    for name in ("stride", "padding", "dilation", "groups", "transposed", "output_padding"):
        assert getattr(fn, name) == getattr(fn_t, f"_saved_{name}")


def test_saved_weight_replaced_through_data_is_refused():
    """.data swaps bypass the version check: the kernels' shape check stops them instead of a read out of bounds."""
    x = nbgrad.randn(2, 2, 6, 6, requires_grad=True)
    w = nbgrad.randn(3, 2, 3, 3, requires_grad=True)
    y = F.conv2d(x, w)
    w.data = nbgrad.randn(3, 2, 2, 2)
    with pytest.raises(RuntimeError, match="replaced through .data"):
        y.sum().backward()
