"""nbgrad.optim against torch.optim: the same model (weights copied from torch), the same data,
the same losses, gradients and parameters after every step, for SGD (plain, momentum,
dampening, Nesterov, weight decay, maximize) and Adam/AdamW (weight decay, amsgrad); an MLP
784-256-10 trained step for step with torch; parameter groups, state_dict round trips,
error texts and reprs."""
import copy

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
import nbgrad.optim as optim
from helpers import assert_close, copy_state, random_array, same_error, to_torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def mlp(lib, sizes, dtype):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [lib.nn.Linear(a, b, dtype=dtype)] + ([lib.nn.ReLU()] if i < len(sizes) - 2 else [])
    return lib.nn.Sequential(*layers)


def models(torch, sizes=(6, 5, 3), dtype=np.float64):
    name = np.dtype(dtype).name
    t = mlp(torch, sizes, getattr(torch, name))
    return copy_state(mlp(nbgrad, sizes, getattr(nbgrad, name)), t), t


def tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)


def train_both(torch, make_opt, steps=5, sizes=(6, 5, 3), batch=8, dtype=np.float64, closure=False, seed=0,
               one_batch=False):
    """Train the same model in both libraries on the same batches (or ``one_batch`` again and
    again) with cross-entropy; check losses, gradients and parameters after every step."""
    n, t = models(torch, sizes, dtype)
    opt, topt = make_opt(optim, n.parameters()), make_opt(torch.optim, t.parameters())
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        x = random_array((batch, sizes[0]), dtype, seed + (0 if one_batch else step))
        y = (np.random.default_rng(seed) if one_batch else rng).integers(0, sizes[-1], batch)

        def loss_n():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(n(nbgrad.tensor(x)), nbgrad.tensor(y))
            loss.backward()
            return loss

        def loss_t():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(t(to_torch(x)), torch.from_numpy(y))
            loss.backward()
            return loss
        if closure:
            loss, tloss = opt.step(loss_n), topt.step(loss_t)
        else:
            loss, tloss = loss_n(), loss_t()
            for p, tp in zip(n.parameters(), t.parameters()):
                assert_close(p.grad, tp.grad, **tol(dtype))
            assert opt.step() is None and topt.step() is None
        assert_close(loss, tloss, **tol(dtype))
        losses.append(loss.item())
        for p, tp in zip(n.parameters(), t.parameters()):
            assert_close(p, tp, **tol(dtype))
    for key, state in opt.state_dict()["state"].items():            # the optimizer state too
        tstate = topt.state_dict()["state"][key]
        assert sorted(state) == sorted(tstate)
        for k, v in state.items():
            assert_close(v, tstate[k], **tol(dtype), check_dtype=k != "step")
    return n, opt, losses


SGD_CASES = [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
             dict(lr=0.05, momentum=0.8, nesterov=True), dict(lr=0.1, weight_decay=0.01),
             dict(lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True), dict(lr=0.01, maximize=True),
             dict(lr=0.01, momentum=0.9, maximize=True, weight_decay=0.1)]
ADAM_CASES = [dict(), dict(lr=0.01), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.01, weight_decay=0.1),
              dict(lr=0.01, amsgrad=True), dict(lr=0.01, maximize=True),
              dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)]


@pytest.mark.parametrize("kw", SGD_CASES, ids=str)
def test_sgd_matches_torch(torch, kw):
    train_both(torch, lambda lib, params: lib.SGD(params, **kw))


@pytest.mark.parametrize("kw", ADAM_CASES, ids=str)
def test_adam_matches_torch(torch, kw):
    train_both(torch, lambda lib, params: lib.Adam(params, **kw))


def test_adamw_matches_torch(torch):
    train_both(torch, lambda lib, params: lib.AdamW(params, lr=0.01))
    train_both(torch, lambda lib, params: lib.AdamW(params, lr=0.01, weight_decay=0.3, amsgrad=True))


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_float32_and_closure(torch, kind):
    kw = dict(lr=0.05, momentum=0.9) if kind == "SGD" else dict(lr=0.01)
    train_both(torch, lambda lib, params: getattr(lib, kind)(params, **kw), dtype=np.float32, closure=True)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_mlp_784_256_10_trains_like_torch(torch, kind):
    """Batch 64, ReLU, cross-entropy: step for step the same losses and weights as torch, and
    the loss on the batch trained on falls."""
    kw = dict(lr=0.05, momentum=0.9) if kind == "SGD" else dict(lr=1e-3)
    # In float32, rounding (BLAS's summation order, which varies with its threads and the
    # machine's load) flips a ReLU whose input is near zero, or, under Adam, which moves each
    # weight by about +-lr whatever its gradient's size, the sign of a near-zero gradient:
    # 6 steps then differ by more than any tolerance. So step for step in float64 (float32
    # training is compared over fewer steps above).
    dtype = np.float64
    _, _, losses = train_both(torch, lambda lib, params: getattr(lib, kind)(params, **kw), steps=6,
                              sizes=(784, 256, 10), batch=64, dtype=dtype, one_batch=True)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.7 * losses[0]


def test_mlp_learns_a_fixed_batch():
    """Many steps on one batch: the loss falls towards zero (the model memorises it)."""
    nbgrad.manual_seed(0)
    model = mlp(nbgrad, (784, 256, 10), nbgrad.float32)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = nbgrad.randn(64, 784), nbgrad.randint(0, 10, (64,))
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.0 and losses[-1] < 0.01 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


# -- what a step must leave alone -------------------------------------------------------------------
def test_step_is_in_place_and_not_recorded():
    model = nn.Linear(3, 2)
    params = {id(p): (p, p.data_ptr()) for p in model.parameters()}
    opt = optim.Adam(model.parameters(), lr=0.1)
    model(nbgrad.ones(4, 3)).sum().backward()
    opt.step()
    for p in model.parameters():
        assert params[id(p)][1] == p.data_ptr() and p.is_leaf and p.grad_fn is None and p.requires_grad
    for state in opt.state.values():
        assert all(not v.requires_grad for v in state.values())
    assert nbgrad.is_grad_enabled()


def test_params_without_grad_are_skipped():
    a, b = nn.Parameter(nbgrad.ones(2)), nn.Parameter(nbgrad.ones(2))
    for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9), optim.Adam([a, b], lr=0.1)):
        (a * 3).sum().backward()
        opt.step()
        assert b.tolist() == [1.0, 1.0] and b not in opt.state and a in opt.state
        a.grad = None


def test_zero_grad():
    p = nn.Parameter(nbgrad.ones(3))
    opt = optim.SGD([p], lr=0.1)
    (p * 2).sum().backward()
    g = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is g and g.tolist() == [0.0, 0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None
    opt.zero_grad()


# -- groups and state --------------------------------------------------------------------------------
def test_param_groups_match_torch(torch):
    def run(lib):
        model = mlp(lib, (4, 3, 2), lib.float64)
        with lib.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        first, last = model[0], model[2]
        opt = lib.optim.SGD([{"params": first.parameters()}, {"params": last.weight, "lr": 0.5, "momentum": 0.5}],
                            lr=0.1, momentum=0.9)
        opt.add_param_group({"params": [last.bias], "nesterov": True})
        for _ in range(3):
            opt.zero_grad()
            model(lib.ones(2, 4, dtype=lib.float64)).pow(2).sum().backward()
            opt.step()
        return repr(opt), [p.detach().numpy().copy() for p in model.parameters()], opt.state_dict()
    n, t = run(nbgrad), run(torch)
    assert n[0] == t[0]
    for a, b in zip(n[1], t[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert n[2]["param_groups"] == t[2]["param_groups"]
    assert list(n[2]["state"]) == list(t[2]["state"])


def test_repr_matches_torch(torch):
    for make in (lambda lib, p: lib.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                 lambda lib, p: lib.Adam(p), lambda lib, p: lib.AdamW(p, amsgrad=True)):
        assert repr(make(optim, [nn.Parameter(nbgrad.ones(1))])) == \
            repr(make(torch.optim, [torch.nn.Parameter(torch.ones(1))]))


def test_named_parameters_give_param_names(torch):
    def names(lib):
        model = lib.nn.Linear(2, 2)
        opt = lib.optim.SGD(model.named_parameters(), lr=0.1)
        return opt.param_groups[0]["param_names"], opt.state_dict()["param_groups"]
    assert names(nbgrad) == names(torch)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_state_dict_round_trip(torch, kind):
    """Resuming from a state_dict (model and optimizer) continues exactly as the original."""
    kw = dict(lr=0.05, momentum=0.9) if kind == "SGD" else dict(lr=0.01, amsgrad=True)
    x, y = nbgrad.tensor(random_array((8, 6), np.float64, 0)), nbgrad.tensor(np.arange(8) % 3)

    def step(model, opt):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    model = mlp(nbgrad, (6, 5, 3), nbgrad.float64)
    opt = getattr(optim, kind)(model.parameters(), **kw)
    for _ in range(3):
        step(model, opt)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    clone = mlp(nbgrad, (6, 5, 3), nbgrad.float64)
    clone.load_state_dict(saved_model)
    clone_opt = getattr(optim, kind)(clone.parameters(), lr=123.0)
    clone_opt.load_state_dict(saved_opt)
    assert clone_opt.param_groups[0]["lr"] == kw["lr"] and clone_opt.param_groups[0]["params"][0] is clone[0].weight
    for state in clone_opt.state.values():                        # copies, not the saved tensors
        for k, v in state.items():
            assert all(v is not w for s in saved_opt["state"].values() for w in s.values())
    for _ in range(3):
        assert step(clone, clone_opt) == step(model, opt)
    for a, b in zip(clone.parameters(), model.parameters()):
        assert_close(a, b, rtol=0, atol=0)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3] and sorted(sd["state"]) == [0, 1, 2, 3]
    assert sd["state"][0][next(iter(sd["state"][0]))] is opt.state[model[0].weight][next(iter(sd["state"][0]))]


def test_state_dict_from_torch_loads(torch):
    """A torch optimizer's state (converted tensor by tensor) continues in nbgrad as in torch."""
    n, t = models(torch)
    topt = torch.optim.Adam(t.parameters(), lr=0.01)
    x = random_array((4, 6), np.float64, 1)
    for _ in range(2):
        topt.zero_grad()
        t(to_torch(x)).square().sum().backward()
        topt.step()
    copy_state(n, t)
    tsd = topt.state_dict()
    opt = optim.Adam(n.parameters())
    opt.load_state_dict({"param_groups": tsd["param_groups"],
                         "state": {k: {n_: nbgrad.tensor(v.numpy()) for n_, v in s.items()}
                                   for k, s in tsd["state"].items()}})
    assert opt.state[n[0].weight]["step"].dtype == nbgrad.float32
    for model, o, lib, xx in ((n, opt, nbgrad, nbgrad.tensor(x)), (t, topt, torch, to_torch(x))):
        o.zero_grad()
        model(xx).square().sum().backward()
        o.step()
    for p, tp in zip(n.parameters(), t.parameters()):
        assert_close(p, tp, rtol=1e-10, atol=1e-12)


def test_load_state_dict_casts_to_param_dtype():
    p = nn.Parameter(nbgrad.ones(2, dtype=nbgrad.float64))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.load_state_dict({"state": {0: {"momentum_buffer": nbgrad.ones(2, dtype=nbgrad.float32)}},
                         "param_groups": [dict(opt.state_dict()["param_groups"][0])]})
    assert opt.state[p]["momentum_buffer"].dtype == nbgrad.float64


def test_error_texts_match_torch(torch):
    def param(lib):
        return lib.nn.Parameter(lib.ones(2))
    same_error(torch, lambda lib: lib.optim.SGD(param(lib), lr=0.1))
    same_error(torch, lambda lib: lib.optim.SGD([], lr=0.1))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=-1))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=0.1, momentum=-0.5))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=0.1, weight_decay=-0.5))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=0.1, nesterov=True))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib), 3], lr=0.1))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib) * 2], lr=0.1))
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=0.1).add_param_group({"params": {param(lib)}}))
    same_error(torch, lambda lib: lib.optim.Adam([param(lib)], lr=-0.1))
    same_error(torch, lambda lib: lib.optim.Adam([param(lib)], eps=-1))
    same_error(torch, lambda lib: lib.optim.Adam([param(lib)], betas=(1.0, 0.9)))
    same_error(torch, lambda lib: lib.optim.Adam([param(lib)], betas=(0.9, -0.1)))
    same_error(torch, lambda lib: lib.optim.Adam([param(lib)], weight_decay=-1))

    def twice(lib):
        p = param(lib)
        opt = lib.optim.SGD([p], lr=0.1)
        opt.add_param_group({"params": [p]})
    same_error(torch, twice)
    same_error(torch, lambda lib: lib.optim.SGD([param(lib)], lr=0.1).add_param_group([param(lib)]))

    def wrong_groups(lib):
        opt = lib.optim.SGD([param(lib)], lr=0.1)
        sd = opt.state_dict()
        sd["param_groups"] = sd["param_groups"] * 2
        opt.load_state_dict(sd)
    same_error(torch, wrong_groups)

    def wrong_size(lib):
        opt = lib.optim.SGD([param(lib)], lr=0.1)
        sd = opt.state_dict()
        sd["param_groups"][0]["params"] = [0, 1]
        opt.load_state_dict(sd)
    same_error(torch, wrong_size)
