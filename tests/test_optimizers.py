"""Every optimizer against torch.optim: 20-step trajectories on the same problem (the same
parameters and, at each step, the same gradient, computed in NumPy from the parameters'
current values, so that only the update rules are compared), over option combinations, in
float64 (tight tolerance) and float32; parameters big enough for the parallel kernels;
state dicts (torch's layout, round trips, loading torch's state); parameter groups; the
version counter; error texts. ``tests/test_optim.py`` has the end-to-end MLP runs."""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as settings_deco
from hypothesis import strategies as st

import nbgrad
import nbgrad.optim as optim
from helpers import assert_close, same_error

from nbgrad.ops.elementwise import PARALLEL_MIN


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def gradient(p, seed):
    """A deterministic, non-linear gradient field (with sign changes and a varying scale)."""
    rng = np.random.default_rng(seed)
    return p ** 3 - p + 0.5 * np.cos(3 * p) + rng.uniform(-0.3, 0.3, p.shape).astype(p.dtype)


def initial(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, s).astype(dtype) for s in shapes]


TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def run_both(torch, name, kw, steps=20, shapes=((5, 3), (4,), ()), dtype=np.float64, groups=None):
    """Step both libraries' ``name`` optimizers ``steps`` times; compare parameters after every
    step and the state dicts at the end. Returns the nbgrad optimizer and parameters."""
    values = initial(shapes, dtype)
    n_params = [nbgrad.nn.Parameter(nbgrad.tensor(v.copy())) for v in values]
    t_params = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
    if groups is None:
        opt, topt = getattr(optim, name)(n_params, **kw), getattr(torch.optim, name)(t_params, **kw)
    else:
        opt = getattr(optim, name)(groups(n_params), **kw)
        topt = getattr(torch.optim, name)(groups(t_params), **kw)
    sign = -1 if kw.get("maximize") else 1          # ascend the negated field: the same path
    for step in range(steps):
        for i, (p, tp) in enumerate(zip(n_params, t_params)):
            g = sign * gradient(p.detach().numpy(), 100 * step + i)
            p.grad, tp.grad = nbgrad.tensor(g), torch.tensor(g.copy())
        assert opt.step() is None and topt.step() is None
        for p, tp in zip(n_params, t_params):
            assert_close(p, tp, **TOL[dtype])
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"] == tsd["param_groups"]
    assert list(sd["state"]) == list(tsd["state"])
    for key, state in sd["state"].items():
        assert list(state) == list(tsd["state"][key])
        for k, v in state.items():
            assert v.dtype.name == str(tsd["state"][key][k].dtype).replace("torch.", "")
            assert_close(v, tsd["state"][key][k], **TOL[dtype])
    return opt, n_params


CASES = {
    "SGD": [dict(lr=0.05), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.5),
            dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1), dict(lr=0.05, momentum=0.5, maximize=True)],
    "Adam": [dict(), dict(lr=0.05, betas=(0.8, 0.95)), dict(lr=0.05, weight_decay=0.1, amsgrad=True),
             dict(lr=0.05, maximize=True, eps=1e-3), dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)],
    "AdamW": [dict(), dict(lr=0.05, weight_decay=0.3, amsgrad=True), dict(lr=0.05, maximize=True)],
    "RMSprop": [dict(), dict(lr=0.01, alpha=0.9), dict(lr=0.01, momentum=0.9), dict(lr=0.01, centered=True),
                dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, eps=1e-4), dict(lr=0.01, maximize=True)],
    "Adagrad": [dict(), dict(lr=0.1, lr_decay=0.1), dict(lr=0.1, weight_decay=0.1, eps=1e-4),
                dict(lr=0.1, initial_accumulator_value=0.5), dict(lr=0.1, maximize=True)],
    "Adadelta": [dict(), dict(lr=0.5, rho=0.8), dict(lr=0.5, weight_decay=0.1, eps=1e-4), dict(maximize=True)],
    "Adamax": [dict(), dict(lr=0.05, betas=(0.8, 0.9)), dict(lr=0.05, weight_decay=0.1, eps=1e-4),
               dict(lr=0.05, maximize=True)],
    "NAdam": [dict(), dict(lr=0.05, betas=(0.8, 0.95)), dict(lr=0.05, weight_decay=0.1),
              dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True), dict(lr=0.05, momentum_decay=0.05),
              dict(lr=0.05, maximize=True)],
    # beta2 = 0.9: the rectified step starts at step 6 (rho_t > 5), so 20 steps see both rules
    "RAdam": [dict(), dict(lr=0.05, betas=(0.8, 0.9)), dict(lr=0.05, betas=(0.9, 0.9), weight_decay=0.1),
              dict(lr=0.05, betas=(0.9, 0.9), weight_decay=0.1, decoupled_weight_decay=True),
              dict(lr=0.05, betas=(0.9, 0.9), maximize=True, eps=1e-4)],
}
ALL = [(name, kw) for name, cases in CASES.items() for kw in cases]
FIRST = [(name, cases[-1]) for name, cases in CASES.items()]


@pytest.mark.parametrize("name,kw", ALL, ids=[f"{n}-{kw}" for n, kw in ALL])
def test_trajectory_matches_torch(torch, name, kw):
    run_both(torch, name, kw)


@pytest.mark.parametrize("name,kw", FIRST, ids=[n for n, _ in FIRST])
def test_float32_trajectory(torch, name, kw):
    run_both(torch, name, kw, steps=10, dtype=np.float32)


@pytest.mark.parametrize("name,kw", FIRST, ids=[n for n, _ in FIRST])
def test_parallel_kernel_for_big_parameters(torch, name, kw):
    """A parameter past ``PARALLEL_MIN`` elements runs the prange kernel: same trajectory."""
    run_both(torch, name, kw, steps=3, shapes=((PARALLEL_MIN + 7,), (3,)))


def test_radam_switches_to_rectified_steps():
    """beta2=0.9: rho_t is at most 5 for steps 1-5, above from step 6 (what CASES relies on)."""
    beta2 = 0.9
    rho_inf = 2 / (1 - beta2) - 1
    rho = [rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t) for t in range(1, 21)]
    assert max(rho[:5]) <= 5 < min(rho[5:])


# -- groups, state dicts ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_param_groups_with_their_own_settings(torch, name):
    def groups(params):
        return [{"params": params[:1], "lr": 0.02}, {"params": params[1:2]}, {"params": params[2:], "lr": 0.003}]
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    run_both(torch, name, kw, steps=8, groups=groups)


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adam"])
def test_add_param_group_midway(torch, name):
    """A group added after some steps starts its own state; trajectories stay with torch's."""
    values = initial(((3, 2), (4,)), np.float64)

    def run(lib):
        a, b = (lib.nn.Parameter(lib.tensor(v.copy())) for v in values)
        opt = getattr(lib.optim, name)([a], lr=0.1)
        out = []
        for step in range(6):
            if step == 3:
                opt.add_param_group({"params": [b], "lr": 0.02})
            for i, p in enumerate((a, b)):
                p.grad = lib.tensor(gradient(p.detach().numpy(), 10 * step + i))
            opt.step()
            out.append([p.detach().numpy().copy() for p in (a, b)])
        return out, len(opt.param_groups), opt.state_dict()["param_groups"]
    n, t = run(nbgrad), run(torch)
    assert n[1:] == t[1:]
    for a, b in zip(n[0], t[0]):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kw", FIRST, ids=[n for n, _ in FIRST])
def test_state_dict_round_trip(name, kw):
    """Resuming from a (deep-copied) state dict continues exactly as the original does."""
    values = initial(((4, 3), (3,)), np.float64)
    a = [nbgrad.nn.Parameter(nbgrad.tensor(v.copy())) for v in values]
    opt = getattr(optim, name)(a, **kw)

    def step(params, o, k):
        for i, p in enumerate(params):
            p.grad = nbgrad.tensor(gradient(p.detach().numpy(), 10 * k + i))
        o.step()
    for k in range(4):
        step(a, opt, k)
    saved = copy.deepcopy(opt.state_dict())
    b = [nbgrad.nn.Parameter(p.detach().clone()) for p in a]
    clone = getattr(optim, name)(b, lr=123.0)
    clone.load_state_dict(saved)
    assert clone.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # NAdam's mu_product is kept in float32 but loaded in the parameter's dtype (as torch does:
    # only 'step' keeps its dtype), so the resumed run differs in the last bits
    exact = dict(rtol=1e-9, atol=1e-12) if name == "NAdam" else dict(rtol=0, atol=0)
    for k in range(4, 8):
        step(a, opt, k)
        step(b, clone, k)
        for p, q in zip(a, b):
            assert_close(p, q, **exact)


@pytest.mark.parametrize("name,kw", FIRST, ids=[n for n, _ in FIRST])
def test_torch_state_dict_loads_and_continues(torch, name, kw):
    """torch's state dict, tensor by tensor converted, continues in nbgrad as in torch."""
    values = initial(((4, 3), (3,)), np.float64)
    tp = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
    topt = getattr(torch.optim, name)(tp, **kw)

    def step(params, o, lib, k):
        for i, p in enumerate(params):
            p.grad = lib.tensor(gradient(p.detach().numpy(), 10 * k + i))
        o.step()
    for k in range(7):
        step(tp, topt, torch, k)
    tsd = topt.state_dict()
    n_params = [nbgrad.nn.Parameter(nbgrad.tensor(p.detach().numpy().copy())) for p in tp]
    opt = getattr(optim, name)(n_params)
    opt.load_state_dict({"param_groups": tsd["param_groups"],
                         "state": {k: {key: nbgrad.tensor(v.numpy()) if hasattr(v, "numpy") else v
                                       for key, v in s.items()} for k, s in tsd["state"].items()}})
    for k in range(7, 12):
        step(tp, topt, torch, k)
        step(n_params, opt, nbgrad, k)
        for p, q in zip(n_params, tp):
            assert_close(p, q, rtol=1e-10, atol=1e-12)


# -- what a step does to the parameter ----------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_step_is_in_place_and_bumps_the_version(name):
    p = nbgrad.nn.Parameter(nbgrad.ones(3, 2))
    opt = getattr(optim, name)([p], lr=0.1)
    y = (p * p).sum()                       # saves p for backward
    p.grad = nbgrad.ones(3, 2)
    ptr, version = p.data_ptr(), p._version
    with nbgrad.enable_grad():
        opt.step()
    assert p.data_ptr() == ptr and p._version == version + 1 and p.grad_fn is None and p.requires_grad
    assert not np.allclose(p.detach().numpy(), 1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_non_contiguous_parameter_and_gradient(torch):
    """A parameter over transposed memory and a broadcast gradient: updated in place, as torch."""
    base = initial(((3, 4),), np.float64)[0]
    p = nbgrad.nn.Parameter(nbgrad.tensor(base.copy()).t())
    tp = torch.nn.Parameter(torch.tensor(base.copy()).t())
    assert not p.is_contiguous()
    opt, topt = optim.Adam([p], lr=0.1), torch.optim.Adam([tp], lr=0.1)
    for k in range(3):
        g = np.broadcast_to(np.arange(3.0) - 1 + k, (4, 3))
        p.grad, tp.grad = nbgrad.tensor(g).expand(4, 3), torch.tensor(g.copy())
        opt.step()
        topt.step()
        assert_close(p, tp, rtol=1e-12, atol=1e-14)


def test_zero_grad_set_to_none():
    p = nbgrad.nn.Parameter(nbgrad.ones(2))
    opt = optim.RMSprop([p])
    p.grad = nbgrad.ones(2)
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("name", list(CASES))
def test_repr_matches_torch(torch, name):
    assert repr(getattr(optim, name)([nbgrad.nn.Parameter(nbgrad.ones(1))], lr=0.5)) == \
        repr(getattr(torch.optim, name)([torch.nn.Parameter(torch.ones(1))], lr=0.5))


BAD = [("RMSprop", dict(lr=-1)), ("RMSprop", dict(eps=-1)), ("RMSprop", dict(momentum=-1)),
       ("RMSprop", dict(weight_decay=-1)), ("RMSprop", dict(alpha=-1)),
       ("Adagrad", dict(lr=-1)), ("Adagrad", dict(lr_decay=-1)), ("Adagrad", dict(weight_decay=-1)),
       ("Adagrad", dict(initial_accumulator_value=-1)), ("Adagrad", dict(eps=-1)),
       ("Adadelta", dict(lr=-1)), ("Adadelta", dict(rho=1.5)), ("Adadelta", dict(eps=-1)),
       ("Adadelta", dict(weight_decay=-1)),
       ("Adamax", dict(lr=-1)), ("Adamax", dict(eps=-1)), ("Adamax", dict(betas=(1.0, 0.9))),
       ("Adamax", dict(betas=(0.9, 1.0))), ("Adamax", dict(weight_decay=-1)),
       ("NAdam", dict(lr=-1)), ("NAdam", dict(betas=(-0.1, 0.9))), ("NAdam", dict(momentum_decay=-1)),
       ("NAdam", dict(weight_decay=-1)), ("NAdam", dict(eps=-1)),
       ("RAdam", dict(lr=-1)), ("RAdam", dict(betas=(0.9, 2.0))), ("RAdam", dict(eps=-1)),
       ("RAdam", dict(weight_decay=-1)), ("AdamW", dict(lr=-1)), ("SGD", dict(lr=-1))]


@pytest.mark.parametrize("name,kw", BAD, ids=[f"{n}-{kw}" for n, kw in BAD])
def test_error_texts_match_torch(torch, name, kw):
    same_error(torch, lambda lib: getattr(lib.optim, name)([lib.nn.Parameter(lib.ones(2))], **kw))


# -- drawn settings ------------------------------------------------------------------------------------
OPTIONS = {"SGD": dict(momentum=[0.0, 0.5, 0.9], dampening=[0.0, 0.3], weight_decay=[0.0, 0.1], maximize=[False, True]),
           "Adam": dict(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True],
                        decoupled_weight_decay=[False, True]),
           "RMSprop": dict(momentum=[0.0, 0.7], centered=[False, True], weight_decay=[0.0, 0.1], alpha=[0.5, 0.99]),
           "Adagrad": dict(lr_decay=[0.0, 0.05], initial_accumulator_value=[0.0, 0.2], weight_decay=[0.0, 0.1]),
           "Adadelta": dict(rho=[0.5, 0.9], weight_decay=[0.0, 0.1], maximize=[False, True]),
           "Adamax": dict(betas=[(0.9, 0.999), (0.5, 0.8)], weight_decay=[0.0, 0.1]),
           "NAdam": dict(momentum_decay=[4e-3, 0.1], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True]),
           "RAdam": dict(betas=[(0.9, 0.999), (0.8, 0.9)], weight_decay=[0.0, 0.1],
                         decoupled_weight_decay=[False, True])}


@st.composite
def settings(draw):
    name = draw(st.sampled_from(sorted(OPTIONS)))
    kw = {k: draw(st.sampled_from(v)) for k, v in OPTIONS[name].items()}
    kw["lr"] = draw(st.sampled_from([1e-3, 0.01, 0.05]))
    shapes = draw(st.lists(st.lists(st.integers(1, 4), max_size=3).map(tuple), min_size=1, max_size=3))
    return name, kw, tuple(shapes)


@settings_deco(max_examples=40, deadline=None)
@given(settings())
def test_drawn_settings_match_torch(torch, drawn):
    name, kw, shapes = drawn
    run_both(torch, name, kw, steps=8, shapes=shapes)
