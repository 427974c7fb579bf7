"""nbgrad.nn against torch.nn: the same module tree built by the same code in both libraries
(names, state_dict, repr, error texts), layers and losses with copied weights giving the
same values and gradients (float32 and float64, odd shapes, non-contiguous inputs), float64
finite-difference checks of the functional ops, and the statistics of the initialisers."""
import copy
import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
import nbgrad.nn as nn
import nbgrad.nn.functional as F
from helpers import assert_close, check_grad, copy_state, nb, random_array, same_error, to_torch, with_layout


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def close(actual, expected, rtol=None):
    a = np.asarray(actual.detach().numpy() if hasattr(actual, "detach") else actual)
    assert_close(actual, expected, **{**TOL[a.dtype], **({"rtol": rtol} if rtol else {})})


# PyTorch's hardsigmoid backward multiplies by float32's 1/6, also in float64; nbgrad's by 1/6
SIXTH = {"Hardsigmoid": 1e-6}


def both(torch, build):
    """``build(lib)`` in both libraries, with torch's initial values copied into nbgrad's."""
    t = build(torch)
    return copy_state(build(nbgrad), t), t


def grads_match(nb_module, t_module):
    for (name, p), (tname, tp) in zip(nb_module.named_parameters(), t_module.named_parameters()):
        assert name == tname
        close(p.grad, tp.grad)


# -- a model built by the same code in both libraries ---------------------------------------------
def make_net(lib):
    nn_ = lib.nn

    class Block(nn_.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn_.Linear(4, 4)
            self.act = nn_.Tanh()
            self.register_buffer("count", lib.zeros(2, dtype=lib.int64))
            self.register_buffer("scratch", lib.ones(3), persistent=False)
            self.scale = nn_.Parameter(lib.ones(1))

        def forward(self, x):
            return self.act(self.fc(x)) * self.scale

    class Net(nn_.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn_.Linear(3, 4)
            self.blocks = nn_.ModuleList([Block(), Block()])
            self.shared = self.inp                         # reachable twice: listed once
            self.head = nn_.Sequential(nn_.ReLU(), nn_.Linear(4, 2, bias=False), nn_.LogSoftmax(dim=1))
            self.missing = None

        def forward(self, x):
            x = self.inp(x)
            for b in self.blocks:
                x = b(x)
            return self.head(x)
    return Net()


def test_module_tree_matches_torch(torch):
    n, t = both(torch, make_net)
    assert [k for k, _ in n.named_parameters()] == [k for k, _ in t.named_parameters()]
    assert [k for k, _ in n.named_buffers()] == [k for k, _ in t.named_buffers()]
    assert [k for k, _ in n.named_modules()] == [k for k, _ in t.named_modules()]
    assert [k for k, _ in n.named_children()] == [k for k, _ in t.named_children()]
    assert [type(m).__name__ for m in n.children()] == [type(m).__name__ for m in t.children()]
    assert list(n.state_dict()) == list(t.state_dict())
    assert [k for k, _ in n.named_parameters(remove_duplicate=False)] == \
        [k for k, _ in t.named_parameters(remove_duplicate=False)]
    assert [k for k, _ in n.named_parameters(prefix="m", recurse=False)] == \
        [k for k, _ in t.named_parameters(prefix="m", recurse=False)]
    assert len(list(n.parameters())) == len(list(t.parameters())) == 9
    assert all(isinstance(p, nn.Parameter) and p.requires_grad and p.is_leaf for p in n.parameters())
    assert repr(n) == repr(t)
    assert dict(n.named_modules())["blocks.1.fc"] is n.blocks[1].fc is list(n.modules())[7]
    assert n.get_submodule("blocks.1.fc") is n.blocks[1].fc
    assert "fc" in dir(n.blocks[0]) and "count" in dir(n.blocks[0])


def test_forward_backward_matches_torch(torch):
    n, t = both(torch, make_net)
    x = random_array((5, 3), np.float32, 0)
    y, yt = n(nb(x)), t(to_torch(x))
    close(y, yt)
    g = random_array(y.shape, np.float32, 1)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    grads_match(n, t)


def test_repr_of_every_layer_matches_torch(torch):
    def build(lib):
        nn_ = lib.nn
        return nn_.Sequential(
            nn_.Linear(3, 4), nn_.ReLU(), nn_.ReLU(inplace=True), nn_.Dropout(0.2), nn_.Dropout(p=1),
            nn_.Softmax(dim=1), nn_.Softmax(), nn_.LogSoftmax(1), nn_.Flatten(), nn_.Flatten(0, 2), nn_.Identity(),
            nn_.Sigmoid(), nn_.Tanh(), nn_.ModuleList([nn_.Linear(2, 2) for _ in range(3)] + [nn_.ReLU()]),
            nn_.ModuleList(), nn_.MSELoss(), nn_.CrossEntropyLoss(label_smoothing=0.1), nn_.NLLLoss(),
            nn_.BCELoss(), nn_.L1Loss(reduction="sum"), nn_.Linear(2, 3, bias=False),
            nn_.Sequential(nn_.Linear(1, 1), nn_.Sequential()))
    assert repr(build(nbgrad)) == repr(build(torch))
    assert repr(nn.Module()) == "Module()"


def test_parameter(torch):
    data = nbgrad.tensor([[1.0, -2.5], [3.0, 4.0]])
    p = nn.Parameter(data)
    assert isinstance(p, nbgrad.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert p.data_ptr() == data.data_ptr()                    # same memory, as in torch
    assert repr(p) == repr(torch.nn.Parameter(torch.tensor([[1.0, -2.5], [3.0, 4.0]])))
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert repr(nn.Parameter()) == repr(torch.nn.Parameter())
    assert type(p * 2) is nbgrad.Tensor and (p * 2).grad_fn is not None
    assert type(nn.Parameter(p)) is nn.Parameter
    same_error(torch, lambda lib: lib.nn.Parameter(lib.tensor([1, 2])))
    assert nn.Parameter(nbgrad.tensor([1, 2]), requires_grad=False).dtype == nbgrad.int64
    q = copy.deepcopy(p)
    assert type(q) is nn.Parameter and q.requires_grad and q.data_ptr() != p.data_ptr()
    assert_close(q, p)
    r = pickle.loads(pickle.dumps(p))
    assert type(r) is nn.Parameter and r.requires_grad
    assert_close(r, p)


def test_registration_rules():
    m = nn.Linear(2, 3)
    m.weight = nn.Parameter(nbgrad.zeros(3, 2))              # replacing a parameter
    assert m.weight.sum().item() == 0 and dict(m.named_parameters())["weight"] is m.weight
    m.bias = None
    assert [k for k, _ in m.named_parameters()] == ["weight"] and list(m.state_dict()) == ["weight"]
    m.extra = nn.ReLU()                                       # a submodule by assignment
    assert list(dict(m.named_children())) == ["extra"]
    m.extra = nn.Parameter(nbgrad.ones(1))                    # now a parameter, no longer a module
    assert list(dict(m.named_children())) == [] and "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())
    m.register_buffer("buf", nbgrad.ones(2))
    m.buf = nbgrad.zeros(2)                                   # replaced, still a buffer
    assert dict(m.named_buffers())["buf"].sum().item() == 0
    m.plain = 3
    assert m.plain == 3 and "plain" not in m.state_dict()


def test_error_texts_match_torch(torch):
    def linear(lib):
        return lib.nn.Linear(2, 3)

    same_error(torch, lambda lib: linear(lib).foo)
    same_error(torch, lambda lib: setattr(linear(lib), "weight", lib.ones(2)))
    same_error(torch, lambda lib: linear(lib).register_parameter("a.b", None))
    same_error(torch, lambda lib: linear(lib).register_parameter("", None))
    same_error(torch, lambda lib: linear(lib).register_parameter("in_features", None))
    same_error(torch, lambda lib: linear(lib).register_parameter("x", lib.ones(2)))
    same_error(torch, lambda lib: linear(lib).register_parameter("x", lib.nn.Parameter(lib.ones(2)) * 2))
    same_error(torch, lambda lib: linear(lib).register_buffer("training", None))
    same_error(torch, lambda lib: linear(lib).to(lib.int64))
    same_error(torch, lambda lib: linear(lib).train("yes"))
    same_error(torch, lambda lib: lib.nn.Module()(1))
    same_error(torch, lambda lib: lib.nn.Module().add_module("x", 3))
    same_error(torch, lambda lib: lib.nn.Module.__init__(lib.nn.ReLU(), 3))
    same_error(torch, lambda lib: lib.nn.Module.__init__(lib.nn.ReLU(), foo=3))
    same_error(torch, lambda lib: lib.nn.Sequential()[0])
    same_error(torch, lambda lib: lib.nn.ModuleList([lib.nn.ReLU()])[-2])
    same_error(torch, lambda lib: lib.nn.Dropout(1.5))
    same_error(torch, lambda lib: lib.nn.functional.dropout(lib.ones(2), -0.1))

    def early(lib):
        class Early(lib.nn.Module):
            def __init__(self):
                self.w = lib.nn.Parameter(lib.ones(1))
        return Early()
    same_error(torch, early)


# -- state ---------------------------------------------------------------------------------------
def test_state_dict_round_trip(torch):
    src, t = both(torch, make_net)
    state = src.state_dict()
    assert all(not v.requires_grad for v in state.values())
    for (k, v), (tk, tv) in zip(state.items(), t.state_dict().items()):
        assert k == tk and v.dtype == nbgrad.tensor(tv.numpy()).dtype
        assert_close(v, tv.numpy())
    assert state["inp.weight"].data_ptr() == src.inp.weight.data_ptr()   # detached, not copied
    assert list(src.state_dict(keep_vars=True).values())[0] is src.inp.weight

    dst = make_net(nbgrad)
    params_before = list(dst.parameters())
    assert repr(dst.load_state_dict(state)) == "<All keys matched successfully>"
    assert list(dst.parameters())[0] is params_before[0]        # loaded in place
    x = nb(random_array((4, 3), np.float32, 2))
    assert_close(dst(x), src(x))
    dst.inp.weight.grad = None
    with nbgrad.no_grad():
        src.inp.weight.add_(1.0)                                 # no memory shared with the copy
    assert not np.allclose(dst.inp.weight.detach().numpy(), src.inp.weight.detach().numpy())


def test_load_state_dict_errors_match_torch(torch):
    def load(lib, edit, strict=True):
        m = lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.Linear(3, 1))
        state = m.state_dict()
        edit(lib, state)
        return m.load_state_dict(state, strict=strict)

    def drop(lib, s):
        del s["1.bias"]
        s["extra"] = lib.ones(1)
        s["0.extra"] = lib.ones(1)

    def resize(lib, s):
        s["0.bias"] = lib.ones(4)

    def both_problems(lib, s):
        drop(lib, s)
        resize(lib, s)

    same_error(torch, lambda lib: load(lib, drop))
    same_error(torch, lambda lib: load(lib, resize))
    same_error(torch, lambda lib: load(lib, both_problems))
    same_error(torch, lambda lib: load(lib, resize, strict=False))
    assert repr(load(nbgrad, drop, strict=False)) == repr(load(torch, drop, strict=False))
    assert load(nbgrad, drop, strict=False).missing_keys == ["1.bias"]


def test_load_state_dict_assign():
    m = nn.Linear(2, 3)
    w = nbgrad.ones(3, 2)
    m.load_state_dict({"weight": w, "bias": nbgrad.zeros(3)}, assign=True)
    assert isinstance(m.weight, nn.Parameter) and m.weight.data_ptr() == w.data_ptr()


def test_module_deepcopy_and_pickle():
    shared = nn.Linear(2, 2)
    pickled = nn.Sequential(shared, nn.ModuleList([nn.ReLU(), shared]), nn.CrossEntropyLoss(nbgrad.ones(2)))
    for m, other in [(make_net(nbgrad), None), (pickled, pickle.loads(pickle.dumps(pickled)))]:
        other = other or copy.deepcopy(m)
        assert list(other.state_dict()) == list(m.state_dict()) and repr(other) == repr(m)
        assert other[0] is other[1][1] if m is pickled else other.shared is other.inp    # sharing survives
        for a, b in zip(other.parameters(), m.parameters()):
            assert type(a) is nn.Parameter and a.data_ptr() != b.data_ptr()
            assert_close(a, b)


# -- modes, gradients, conversion -----------------------------------------------------------------
def test_train_eval_reaches_every_module():
    m = make_net(nbgrad)
    assert m.eval() is m
    assert not any(s.training for s in m.modules())
    assert m.train() is m and all(s.training for s in m.modules())
    m.blocks.train(False)
    assert m.training and not m.blocks[0].fc.training


def test_zero_grad_and_requires_grad_():
    m = nn.Linear(3, 2)
    m(nbgrad.ones(4, 3)).sum().backward()
    g = m.weight.grad
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is g and g.abs().sum().item() == 0 and not g.requires_grad
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    assert m.requires_grad_(False) is m and not any(p.requires_grad for p in m.parameters())


def test_to_keeps_parameters_and_converts_floats():
    m = make_net(nbgrad)
    m(nbgrad.ones(2, 3)).sum().backward()
    params = list(m.parameters())
    assert m.to(nbgrad.float64) is m
    assert [p is q for p, q in zip(m.parameters(), params)] == [True] * len(params)
    assert all(p.dtype == nbgrad.float64 and p.grad.dtype == nbgrad.float64 for p in m.parameters())
    assert m.blocks[0].count.dtype == nbgrad.int64 and m.blocks[0].scratch.dtype == nbgrad.float64
    assert m(nbgrad.ones(2, 3, dtype=nbgrad.float64)).dtype == nbgrad.float64
    m.float()
    assert all(p.dtype == nbgrad.float32 for p in m.parameters())
    m.to(nbgrad.zeros(1, dtype=nbgrad.float64))
    assert all(p.dtype == nbgrad.float64 for p in m.parameters())
    m.to("cpu", dtype=nbgrad.float32)
    assert all(p.dtype == nbgrad.float32 for p in m.parameters())


def test_apply_visits_children_first(torch):
    def order(lib):
        seen = []
        make_net(lib).apply(lambda mod: seen.append(type(mod).__name__))
        return seen
    assert order(nbgrad) == order(torch)


def test_apply_with_init():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    def init(mod):
        if isinstance(mod, nn.Linear):
            nn.init.constant_(mod.weight, 0.5)
            nn.init.zeros_(mod.bias)
    m.apply(init)
    assert all((p.detach().numpy() == 0.5).all() for n, p in m.named_parameters() if n.endswith("weight"))
    assert all((p.detach().numpy() == 0).all() for n, p in m.named_parameters() if n.endswith("bias"))


# -- containers ------------------------------------------------------------------------------------
def test_sequential_and_modulelist_behave_as_torch(torch):
    def ops(lib):
        nn_ = lib.nn
        a, b, c = nn_.ReLU(), nn_.Tanh(), nn_.Sigmoid()
        s = nn_.Sequential(a, b, c)
        out = [len(s), s[-1] is c, type(s[1:]).__name__, len(s[1:]), s[1:][0] is b]
        del s[0]
        out += [list(dict(s.named_children())), s[0] is b]
        s.append(nn_.Identity()).insert(0, a)
        out += [repr(s), s.pop(1) is b, repr(s)]
        s[0] = nn_.Flatten()
        out += [repr(s)]
        named = nn_.Sequential(__import__("collections").OrderedDict(first=a, second=b))
        out += [repr(named), named[1] is b]
        ml = nn_.ModuleList([a, b])
        ml += [c]
        ml.extend([a]).append(b).insert(1, c)
        out += [repr(ml), len(ml), ml[-1] is b, repr(ml[1:3]), repr(ml + nn_.ModuleList([a]))]
        del ml[0:2]
        out += [repr(ml), [type(m).__name__ for m in ml]]
        return out
    assert ops(nbgrad) == ops(torch)


def test_sequential_forward():
    m = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2), nn.Softmax(dim=-1))
    y = m(nb(random_array((4, 3), np.float32, 0)))
    assert y.shape == (4, 2)
    np.testing.assert_allclose(y.detach().numpy().sum(1), 1, rtol=1e-6)


# -- layers with torch's weights -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,layout", [((3,), "contiguous"), ((5, 3), "contiguous"), ((5, 3), "transposed"),
                                          ((2, 4, 3), "sliced"), ((1, 3), "contiguous")])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(torch, dtype, shape, layout, bias):
    tdtype = getattr(torch, np.dtype(dtype).name)
    t = torch.nn.Linear(3, 2, bias=bias, dtype=tdtype)
    n = copy_state(nn.Linear(3, 2, bias=bias, dtype=getattr(nbgrad, np.dtype(dtype).name)), t)
    x = with_layout(random_array(shape, dtype, 3), layout)
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    y, yt = n(xn), t(xt)
    close(y, yt)
    g = random_array(yt.shape, dtype, 4)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    grads_match(n, t)
    close(xn.grad, xt.grad)


def test_linear_gradcheck():
    check_grad(lambda x, w, b: F.linear(x, w, b), random_array((4, 3), np.float64, 0),
               random_array((2, 3), np.float64, 1), random_array((2,), np.float64, 2))
    check_grad(lambda x, w: F.linear(x, w), random_array((2, 1, 3), np.float64, 0), random_array((2, 3), np.float64, 1))


def test_linear_default_init():
    """Weight and bias uniform in ±1/sqrt(in_features), as torch initialises them."""
    nbgrad.manual_seed(0)
    m = nn.Linear(784, 256)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    bound = 1 / math.sqrt(784)
    assert w.shape == (256, 784) and b.shape == (256,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound and abs(w.mean()) < 0.01 * bound
    assert abs(np.abs(b).max() - bound) < 0.05 * bound
    nbgrad.manual_seed(0)
    assert_close(nn.Linear(784, 256).weight, m.weight)              # reproducible
    assert not np.allclose(nn.Linear(784, 256).weight.detach().numpy(), w)
    assert nn.Linear(3, 2, dtype=nbgrad.float64).weight.dtype == nbgrad.float64


ACTIVATIONS = [
    ("ReLU", lambda nn_: nn_.ReLU(), dict(away_from=0.0)),
    ("Sigmoid", lambda nn_: nn_.Sigmoid(), {}),
    ("Tanh", lambda nn_: nn_.Tanh(), {}),
    ("Softmax", lambda nn_: nn_.Softmax(dim=-1), {}),
    ("Softmax0", lambda nn_: nn_.Softmax(dim=0), {}),
    ("LogSoftmax", lambda nn_: nn_.LogSoftmax(dim=1), {}),
    ("Flatten", lambda nn_: nn_.Flatten(), {}),
    ("Flatten0", lambda nn_: nn_.Flatten(0, 1), {}),
    ("Identity", lambda nn_: nn_.Identity(), {}),
    ("Softplus", lambda nn_: nn_.Softplus(beta=2.0, threshold=1.0), {}),
    ("SiLU", lambda nn_: nn_.SiLU(), {}),
    ("GELU", lambda nn_: nn_.GELU(), {}),
    ("GELUTanh", lambda nn_: nn_.GELU(approximate="tanh"), {}),
    ("ELU", lambda nn_: nn_.ELU(alpha=0.5), dict(away_from=0.0)),
    ("SELU", lambda nn_: nn_.SELU(), dict(away_from=0.0)),
    ("CELU", lambda nn_: nn_.CELU(alpha=2.0), dict(away_from=0.0)),
    ("LeakyReLU", lambda nn_: nn_.LeakyReLU(0.2), dict(away_from=0.0)),
    ("Hardtanh", lambda nn_: nn_.Hardtanh(-0.5, 0.25), {}),
    ("ReLU6", lambda nn_: nn_.ReLU6(), dict(away_from=0.0)),
    ("Hardsigmoid", lambda nn_: nn_.Hardsigmoid(), {}),
    ("Hardswish", lambda nn_: nn_.Hardswish(), {}),
    ("LogSigmoid", lambda nn_: nn_.LogSigmoid(), {}),
    ("Mish", lambda nn_: nn_.Mish(), {}),
    ("Softsign", lambda nn_: nn_.Softsign(), {}),
    ("Tanhshrink", lambda nn_: nn_.Tanhshrink(), {}),
]


@pytest.mark.parametrize("name,make,kw", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), layout=st.sampled_from(
    ["contiguous", "transposed", "sliced"]), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 99))
def test_activation_modules_match_torch(torch, name, make, kw, shape, layout, dtype, seed):
    x = with_layout(random_array(shape, dtype, seed, **kw), layout)
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    y, yt = make(nn)(xn), make(torch.nn)(xt)
    close(y, yt)
    g = random_array(yt.shape, dtype, seed + 1)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    close(xn.grad, xt.grad, SIXTH.get(name))


@pytest.mark.parametrize("fn", ["relu", "sigmoid", "tanh"])
def test_pointwise_activations_on_0d_and_inplace(torch, fn):
    for value in (-0.7, 1.3):
        close(getattr(F, fn)(nbgrad.tensor(value)), getattr(torch.nn.functional, fn)(torch.tensor(value)))
    x = nbgrad.tensor([-1.0, 2.0])
    assert F.relu(x, inplace=True) is x and x.tolist() == [0.0, 2.0]
    assert nn.ReLU(inplace=True)(x) is x


INPLACE_ACTIVATIONS = [("SiLU", {}), ("ELU", dict(alpha=0.5)), ("SELU", {}), ("CELU", dict(alpha=2.0)),
                       ("LeakyReLU", dict(negative_slope=0.2)), ("Hardtanh", dict(min_val=-0.5, max_val=0.25)),
                       ("ReLU6", {}), ("Hardsigmoid", {}), ("Hardswish", {}), ("Mish", {})]


@pytest.mark.parametrize("name,kw", INPLACE_ACTIVATIONS, ids=[a[0] for a in INPLACE_ACTIVATIONS])
def test_activation_modules_inplace_and_repr(torch, name, kw):
    """``inplace=True`` updates the input (through apply_inplace: history kept, leaves refused)
    and its gradient is PyTorch's; the modules print as PyTorch's."""
    for inplace in (False, True):
        assert repr(getattr(nn, name)(**kw, inplace=inplace)) == repr(getattr(torch.nn, name)(**kw, inplace=inplace))
    x = random_array((3, 4), np.float64, 2) * 4
    a, at = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    h, ht = a * 1, at * 1
    out, out_t = getattr(nn, name)(**kw, inplace=True)(h), getattr(torch.nn, name)(**kw, inplace=True)(ht)
    assert out is h and h._version == 1
    close(out, out_t)
    out.sum().backward()
    out_t.sum().backward()
    close(a.grad, at.grad, SIXTH.get(name))
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        getattr(nn, name)(**kw, inplace=True)(a)


@pytest.mark.parametrize("name,kw", [("Softplus", dict(beta=2.0, threshold=3.0)), ("GELU", dict(approximate="tanh")),
                                     ("LogSigmoid", {}), ("Softsign", {}), ("Tanhshrink", {})])
def test_activation_modules_repr(torch, name, kw):
    assert repr(getattr(nn, name)(**kw)) == repr(getattr(torch.nn, name)(**kw))


def test_activation_argument_errors():
    x = nbgrad.ones(2)
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        F.gelu(x, approximate="exact")
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(x, 1.0, -1.0)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_gradcheck_and_implicit_dim(torch, fn):
    x = random_array((3, 4), np.float64, 0)
    check_grad(lambda t: getattr(F, fn)(t, dim=1), x)
    check_grad(lambda t: getattr(F, fn)(t, 0, dtype=nbgrad.float64), x)
    for shape in [(4,), (2, 3), (2, 3, 4), (2, 3, 4, 2)]:
        a = random_array(shape, np.float64, 1)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            y = getattr(F, fn)(nb(a))
        assert any("Implicit dimension choice" in str(x.message) for x in w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            close(y, getattr(torch.nn.functional, fn)(to_torch(a)))
    close(getattr(F, fn)(nb(x.astype(np.float32)), 1, dtype=nbgrad.float64),
          getattr(torch.nn.functional, fn)(to_torch(x.astype(np.float32)), 1, dtype=torch.float64))


# -- dropout -----------------------------------------------------------------------------------------
def test_dropout_train_and_eval():
    nbgrad.manual_seed(1)
    m = nn.Dropout(0.25)
    x = nbgrad.ones(200, 100, requires_grad=True)
    y = m(x)
    out = y.detach().numpy()
    kept = out != 0
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(1 - kept.mean() - 0.25) < 0.01                       # 20000 draws: 4 sigma is 0.012
    y.backward(nbgrad.ones(200, 100))
    np.testing.assert_array_equal(x.grad.numpy(), out)              # the gradient is the same mask
    assert not np.array_equal(m(x).detach().numpy() != 0, kept)     # a new mask each call
    m.eval()
    assert m(x) is x
    assert F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    assert (F.dropout(x, 1.0).detach().numpy() == 0).all()
    z = nbgrad.ones(50)
    assert F.dropout(z, 0.5, inplace=True) is z and set(np.unique(z.numpy())) <= {0.0, 2.0}


# -- losses ------------------------------------------------------------------------------------------
def _loss_case(name, dtype, seed, reduction, **kw):
    """Input, target and options (arrays as NumPy arrays) for loss ``name`` (a class name)."""
    rng = np.random.default_rng(seed)
    n, c = 5, 4
    if name in ("MSELoss", "L1Loss"):
        x = random_array((n, c), dtype, seed)
        target = random_array((n, c), dtype, seed + 1)
    elif name == "BCELoss":
        x = random_array((n, c), dtype, seed, 0.05, 0.95)
        target = random_array((n, c), dtype, seed + 1, 0, 1)
        if kw.pop("with_weight", False):
            kw["weight"] = random_array((c,), dtype, seed + 2, 0.5, 2)
    else:
        shape = kw.pop("shape", (n, c))
        x = random_array(shape, dtype, seed)
        if name == "NLLLoss":
            x = x - np.log(np.exp(x).sum(axis=1 if x.ndim > 1 else 0, keepdims=True))
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        if kw.pop("probabilities", False):
            target = random_array(shape, dtype, seed + 1, 0, 1)
        else:
            target = rng.integers(0, shape[1 if len(shape) > 1 else 0], tshape).astype(np.int64)
            if "ignore_index" in kw and target.size > 1:
                target.reshape(-1)[::3] = kw["ignore_index"]
        if kw.pop("with_weight", False):
            kw["weight"] = random_array((shape[1 if len(shape) > 1 else 0],), dtype, seed + 2, 0.5, 2)
    return x, target, dict(reduction=reduction, **kw)


def _options(kw, convert):
    return {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


LOSSES = [
    ("MSELoss", {}), ("L1Loss", {}), ("BCELoss", {}), ("BCELoss", dict(with_weight=True)),
    ("NLLLoss", {}), ("NLLLoss", dict(with_weight=True)), ("NLLLoss", dict(ignore_index=1)),
    ("NLLLoss", dict(with_weight=True, ignore_index=2)), ("NLLLoss", dict(shape=(4,))),
    ("NLLLoss", dict(shape=(3, 4, 2, 2), with_weight=True)),
    ("CrossEntropyLoss", {}), ("CrossEntropyLoss", dict(with_weight=True)),
    ("CrossEntropyLoss", dict(ignore_index=0)), ("CrossEntropyLoss", dict(shape=(4,))),
    ("CrossEntropyLoss", dict(shape=(3, 4, 2))), ("CrossEntropyLoss", dict(label_smoothing=0.2)),
    ("CrossEntropyLoss", dict(label_smoothing=0.1, with_weight=True, ignore_index=3)),
    ("CrossEntropyLoss", dict(label_smoothing=0.1, shape=(2, 4, 3))),
    ("CrossEntropyLoss", dict(probabilities=True)),
    ("CrossEntropyLoss", dict(probabilities=True, with_weight=True, label_smoothing=0.3)),
    ("CrossEntropyLoss", dict(probabilities=True, shape=(2, 4, 3))),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", LOSSES, ids=[f"{n}-{'-'.join(k)}" for n, k in LOSSES])
def test_losses_match_torch(torch, name, kw, dtype, reduction):
    x, target, kw = _loss_case(name, dtype, 7, reduction, **kw)
    x = with_layout(x, {"mean": "contiguous", "sum": "transposed", "none": "sliced"}[reduction])
    # (torch's nll_loss2d backward refuses a non-contiguous input: give torch a contiguous copy)
    xn, xt = nb(x, requires_grad=True), to_torch(np.ascontiguousarray(x), requires_grad=True)
    loss = getattr(nn, name)(**_options(kw, nbgrad.tensor))(xn, nb(target))
    loss_t = getattr(torch.nn, name)(**_options(kw, to_torch))(xt, to_torch(target))
    close(loss, loss_t)
    g = random_array(tuple(loss_t.shape), dtype, 3)
    loss.backward(nb(g))
    loss_t.backward(to_torch(g))
    close(xn.grad, xt.grad)


@pytest.mark.parametrize("name,kw", LOSSES[:3] + LOSSES[5:8] + LOSSES[11:12] + LOSSES[15:17] + LOSSES[-2:-1],
                         ids=lambda v: str(v))
def test_losses_gradcheck(name, kw):
    x, target, kw = _loss_case(name, np.float64, 11, "sum", **kw)
    fn = getattr(F, {"MSELoss": "mse_loss", "L1Loss": "l1_loss", "BCELoss": "binary_cross_entropy",
                     "NLLLoss": "nll_loss", "CrossEntropyLoss": "cross_entropy"}[name])
    if name == "L1Loss":
        x = np.where(np.abs(x - target) < 0.1, target + 0.2, x)          # away from the kink
    check_grad(lambda t: fn(t, nb(target), **_options(kw, nbgrad.tensor)), x)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_weight", [False, True])
def test_all_targets_ignored_gives_nan_and_no_gradient(torch, smoothing, with_weight):
    x = random_array((3, 4), np.float64, 0)
    kw = dict(ignore_index=2, label_smoothing=smoothing)
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    loss = F.cross_entropy(xn, nbgrad.tensor([2, 2, 2]), weight=nbgrad.ones(4, dtype=nbgrad.float64) * 2
                           if with_weight else None, **kw)
    loss_t = torch.nn.functional.cross_entropy(xt, torch.tensor([2, 2, 2]), weight=torch.ones(4, dtype=torch.float64)
                                               * 2 if with_weight else None, **kw)
    assert math.isnan(loss.item()) and math.isnan(loss_t.item())
    loss.backward()
    loss_t.backward()
    assert_close(xn.grad, xt.grad) and (xn.grad.numpy() == 0).all()


def test_bce_clamps_log_like_torch(torch):
    x = np.array([0.0, 1.0, 0.5, 1e-30], np.float32)
    t = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    for reduction in ("none", "mean"):
        close(F.binary_cross_entropy(nb(x), nb(t), reduction=reduction),
              torch.nn.functional.binary_cross_entropy(to_torch(x), to_torch(t), reduction=reduction))


def test_loss_errors_and_warnings_match_torch(torch):
    same_error(torch, lambda lib: lib.nn.functional.mse_loss(lib.ones(2), lib.ones(2), reduction="avg"))
    same_error(torch, lambda lib: lib.nn.functional.cross_entropy(lib.ones(3, 4), lib.zeros(2, dtype=lib.int64)))
    same_error(torch, lambda lib: lib.nn.functional.nll_loss(lib.ones(3, 4), lib.zeros(2, dtype=lib.int64)))
    same_error(torch, lambda lib: lib.nn.functional.binary_cross_entropy(lib.ones(3) / 2, lib.ones(3, 1)))
    for fn in ("mse_loss", "l1_loss"):
        def warns(lib):
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                loss = getattr(lib.nn.functional, fn)(lib.ones(3, 1), lib.ones(3) * 2)
            return str(w[0].message), loss.item()
        assert warns(nbgrad) == warns(torch)


def test_legacy_reduction_flags(torch):
    x, t = random_array((3, 2), np.float64, 0), random_array((3, 2), np.float64, 1)
    for size_average, reduce in [(False, None), (None, False), (True, True)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = nn.MSELoss(size_average=size_average, reduce=reduce)
            tm = torch.nn.MSELoss(size_average=size_average, reduce=reduce)
        assert n.reduction == tm.reduction
        close(n(nb(x), nb(t)), tm(to_torch(x), to_torch(t)))


def test_weighted_loss_weight_is_a_buffer(torch):
    w = nbgrad.tensor([1.0, 2.0, 3.0])
    m = nn.CrossEntropyLoss(weight=w)
    assert list(m.state_dict()) == list(torch.nn.CrossEntropyLoss(weight=torch.ones(3)).state_dict()) == ["weight"]
    assert m.to(nbgrad.float64).weight.dtype == nbgrad.float64


# -- init ----------------------------------------------------------------------------------------------
def test_calculate_gain_and_fans_match_torch(torch):
    for args in [("linear",), ("conv2d",), ("sigmoid",), ("tanh",), ("relu",), ("leaky_relu",),
                 ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu",)]:
        assert nn.init.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)
    same_error(torch, lambda lib: lib.nn.init.calculate_gain("swish"))
    same_error(torch, lambda lib: lib.nn.init.calculate_gain("leaky_relu", True))
    for shape in [(3, 4), (5, 2, 3), (4, 3, 2, 2)]:
        assert nn.init._calculate_fan_in_and_fan_out(nbgrad.empty(shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    same_error(torch, lambda lib: lib.nn.init.xavier_uniform_(lib.empty(3)))
    same_error(torch, lambda lib: lib.nn.init.kaiming_uniform_(lib.empty(3, 3), mode="fan_avg"))


INITS = [
    ("uniform_", dict(a=-0.5, b=1.5), dict(low=-0.5, high=1.5)),
    ("normal_", dict(mean=0.3, std=2.0), dict(mean=0.3, std=2.0)),
    ("xavier_uniform_", dict(gain=2.0), dict(high=2.0 * math.sqrt(6 / (300 + 200)))),
    ("xavier_normal_", {}, dict(std=math.sqrt(2 / (300 + 200)))),
    ("kaiming_uniform_", dict(a=math.sqrt(5)), dict(high=1 / math.sqrt(300))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu"), dict(high=math.sqrt(6 / 200))),
    ("kaiming_normal_", dict(nonlinearity="relu"), dict(std=math.sqrt(2 / 300))),
]


@pytest.mark.parametrize("name,kw,expect", INITS, ids=[f"{i[0]}-{i[1]}" for i in INITS])
@pytest.mark.parametrize("dtype", [nbgrad.float32, nbgrad.float64])
def test_random_inits(name, kw, expect, dtype):
    """In place, not recorded, and with the right distribution (mean and spread, bounds)."""
    p = nn.Parameter(nbgrad.zeros(200, 300, dtype=dtype))
    ptr = p.data_ptr()
    assert getattr(nn.init, name)(p, **kw) is p
    assert p.data_ptr() == ptr and p.is_leaf and p.grad_fn is None and p.dtype == dtype
    v = p.detach().numpy()
    if "std" in expect:
        assert abs(v.mean() - expect.get("mean", 0)) < 0.02 * expect["std"] * 5
        assert abs(v.std() - expect["std"]) < 0.02 * expect["std"]
    else:
        low, high = expect.get("low", -expect["high"]), expect["high"]
        assert low <= v.min() < low + 0.01 * (high - low) and high - 0.01 * (high - low) < v.max() < high
        assert abs(v.std() - (high - low) / math.sqrt(12)) < 0.02 * (high - low) / math.sqrt(12)


def test_constant_inits_and_generator():
    p = nn.Parameter(nbgrad.empty(3, 2))
    assert nn.init.constant_(p, 0.25) is p and (p.detach().numpy() == 0.25).all()
    assert nn.init.ones_(p) is p and (p.detach().numpy() == 1).all()
    assert nn.init.zeros_(p) is p and (p.detach().numpy() == 0).all() and p.grad_fn is None
    a, b = nbgrad.empty(4, 4), nbgrad.empty(4, 4)
    nn.init.normal_(a, generator=nbgrad.Generator().manual_seed(3))
    nn.init.normal_(b, generator=nbgrad.Generator().manual_seed(3))
    assert_close(a, b)
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_uniform_(nbgrad.empty(0, 3))
