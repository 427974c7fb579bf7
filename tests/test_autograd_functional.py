"""``autograd.functional`` against ``torch.autograd.functional`` on the same functions:
values, output structure (tensor vs tuple, nested tuples), create_graph, strict errors."""
import numpy as np
import pytest

import nbgrad
import nbgrad.autograd.functional as F

torch = pytest.importorskip("torch")
TF = torch.autograd.functional

rng = np.random.default_rng(0)
X, Y, V, W = (rng.normal(size=3) for _ in range(4))


def _pair(lib):
    return (lib.tensor(X), lib.tensor(Y))


def vector_fn(lib):
    return lambda a, b: ((a * b).exp() + a.sin() * b ** 2, (a * a).sum() * b)


def scalar_fn(lib):
    return lambda a, b: (a.tanh() * b ** 3).sum() + (a * a * b).sum()


def _same(ours, theirs):
    if isinstance(theirs, (tuple, list)):       # PyTorch's forward-mode jacobian gives lists
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            _same(o, t)
    else:
        assert isinstance(ours, nbgrad.Tensor)
        assert tuple(ours.shape) == tuple(theirs.shape)
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
def test_jacobian(strategy):
    vec = dict(vectorize=True) if strategy == "forward-mode" else {}
    _same(F.jacobian(vector_fn(nbgrad), _pair(nbgrad), strategy=strategy),
          TF.jacobian(vector_fn(torch), _pair(torch), strategy=strategy, **vec))
    single = lambda x: (x.reshape(3, 1) * x).exp()           # noqa: E731
    _same(F.jacobian(single, nbgrad.tensor(X), strategy=strategy),
          TF.jacobian(single, torch.tensor(X), strategy=strategy, **vec))


def test_hessian():
    _same(F.hessian(scalar_fn(nbgrad), _pair(nbgrad)), TF.hessian(scalar_fn(torch), _pair(torch)))
    f = lambda x: (x.exp() * x).sum()                         # noqa: E731
    _same(F.hessian(f, nbgrad.tensor(X)), TF.hessian(f, torch.tensor(X)))


@pytest.mark.parametrize("name", ["vjp", "jvp"])
def test_vjp_jvp(name):
    v_n, v_t = (nbgrad.tensor(V), nbgrad.tensor(W)), (torch.tensor(V), torch.tensor(W))
    _same(getattr(F, name)(vector_fn(nbgrad), _pair(nbgrad), v_n), getattr(TF, name)(vector_fn(torch), _pair(torch), v_t))
    f = lambda x: x.cos() * 3                                 # noqa: E731
    _same(getattr(F, name)(f, nbgrad.tensor(X), nbgrad.tensor(V)), getattr(TF, name)(f, torch.tensor(X), torch.tensor(V)))


@pytest.mark.parametrize("name", ["vhp", "hvp"])
def test_vhp_hvp(name):
    v_n, v_t = (nbgrad.tensor(V), nbgrad.tensor(W)), (torch.tensor(V), torch.tensor(W))
    _same(getattr(F, name)(scalar_fn(nbgrad), _pair(nbgrad), v_n), getattr(TF, name)(scalar_fn(torch), _pair(torch), v_t))


def test_v_may_be_omitted_for_single_elements():
    f = lambda x: (x * x).exp()                               # noqa: E731
    for name in ("vjp", "jvp", "vhp", "hvp"):
        g = (lambda x: f(x).sum()) if name in ("vhp", "hvp") else f
        _same(getattr(F, name)(g, nbgrad.tensor([0.7], dtype=nbgrad.float64)), getattr(TF, name)(g, torch.tensor([0.7], dtype=torch.float64)))


@pytest.mark.parametrize("name", ["vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"])
def test_create_graph_results_are_differentiable(name):
    """With create_graph the result differentiates again: compare its gradient with PyTorch's."""
    results = {}
    for lib in (nbgrad, torch):
        x = lib.tensor(X, requires_grad=True)
        v = lib.tensor(V)
        mod = F if lib is nbgrad else TF
        f = (lambda t: (t.sin() * t).sum()) if name in ("hessian", "vhp", "hvp") else (lambda t: t.sin() * t * t)
        args = (f, x) if name in ("jacobian", "hessian") else (f, x, v)
        out = getattr(mod, name)(*args, create_graph=True)
        res = out[1] if isinstance(out, tuple) else out
        assert res.requires_grad
        (g,) = lib.autograd.grad((res * res).sum(), x)
        results[lib.__name__] = (res.detach().numpy(), g.numpy())
    for a, b in zip(results["nbgrad"], results["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    out = F.vjp(lambda t: t * 2, nbgrad.tensor(X, requires_grad=True), nbgrad.tensor(V))
    assert not out[1].requires_grad


def test_non_strict_fills_zeros_and_strict_raises():
    f = lambda a, b: a * 2                                    # noqa: E731
    for lib, mod in ((nbgrad, F), (torch, TF)):
        jac = mod.jacobian(f, _pair(lib))
        assert not jac[1].detach().numpy().any()
    msgs = []
    for lib, mod in ((nbgrad, F), (torch, TF)):
        with pytest.raises(RuntimeError) as info:
            mod.jacobian(f, _pair(lib), strict=True)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]
    for name in ("vjp", "jvp"):
        msgs = []
        for lib, mod in ((nbgrad, F), (torch, TF)):
            with pytest.raises(RuntimeError) as info:
                getattr(mod, name)(lambda a: lib.ones(3, dtype=lib.float64), lib.tensor(X), lib.tensor(V), strict=True)
            msgs.append(str(info.value))
        assert msgs[0] == msgs[1]


@pytest.mark.parametrize("call", [
    lambda lib, mod: mod.vjp(lambda x: x * 2, lib.tensor(X)),
    lambda lib, mod: mod.jvp(lambda x: x * 2, lib.tensor(X)),
    lambda lib, mod: mod.vjp(lambda x: x * 2, lib.tensor(X), lib.tensor([1.0, 2.0], dtype=lib.float64)),
    lambda lib, mod: mod.jvp(lambda x, y: x * y, (lib.tensor(X), lib.tensor(Y)), (lib.tensor(V),)),
    lambda lib, mod: mod.hessian(lambda x: x * 2, lib.tensor(X)),
    lambda lib, mod: mod.vhp(lambda x: (x, x), lib.tensor(X), lib.tensor(V)),
    lambda lib, mod: mod.jacobian(lambda x: x, [lib.tensor(X)]),
    lambda lib, mod: mod.jacobian(lambda x: x, lib.tensor(X), strict=True, vectorize=True),
])
def test_errors_match_torch(call):
    errors = []
    for lib, mod in ((nbgrad, F), (torch, TF)):
        with pytest.raises((RuntimeError, TypeError)) as info:
            call(lib, mod)
        errors.append((type(info.value), str(info.value).replace("torch.", "").replace("nbgrad.tensor.", "")))
    assert errors[0][0] is errors[1][0]
    if "type <class" not in errors[1][1]:
        assert errors[0][1] == errors[1][1]


def test_jvp_falls_back_to_double_backward_for_ops_without_a_forward_rule():
    f = lambda x: x.masked_select(x > 0).sum() * x           # noqa: E731  (masked_select has no forward rule)
    x, v = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    _same(F.jvp(f, nbgrad.tensor(x), nbgrad.tensor(v)), TF.jvp(f, torch.tensor(x), torch.tensor(v)))
    res = F.jvp(f, nbgrad.tensor(x, requires_grad=True), nbgrad.tensor(v), create_graph=True)[1]
    assert res.requires_grad


def test_vectorize_gives_the_same_jacobian():
    _same(F.jacobian(vector_fn(nbgrad), _pair(nbgrad), vectorize=True), TF.jacobian(vector_fn(torch), _pair(torch)))
