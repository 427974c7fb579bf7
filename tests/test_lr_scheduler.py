"""nbgrad.optim.lr_scheduler against torch.optim.lr_scheduler: the lr (and momentum) of every
param group over 30 steps of the same optimizer, state dicts, warnings and error texts."""
import io
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.optim import lr_scheduler as ours_sched

STEPS = 30


def make(lib, optimizer="sgd"):
    """A two-group optimizer over a tiny least-squares problem, built the same way in both libraries."""
    w = lib.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    b = lib.tensor(np.zeros(2), requires_grad=True)
    groups = [{"params": [w]}, {"params": [b], "lr": 0.05}]
    if optimizer == "sgd":
        opt = lib.optim.SGD(groups, lr=0.1, momentum=0.9)
    else:
        opt = lib.optim.Adam(groups, lr=0.01, betas=(0.9, 0.99))
    x = lib.tensor(np.arange(12.0).reshape(4, 3) / 10)
    y = lib.tensor(np.ones((4, 2)))

    def train_step():
        opt.zero_grad()
        ((x @ w.t() + b - y) ** 2).mean().backward()
        opt.step()
    return opt, train_step, (w, b)


def _lambda(epoch):
    return 0.95 ** epoch


def _mult(epoch):
    return 0.9 if epoch % 3 else 1.0


SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 15], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=8, eta_min=0.001),   # past T_max: back up
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=[_lambda, lambda e: 1 / (e + 1)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lr_lambda=_mult),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=12),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=20, power=2.0),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS),
    "OneCycleLR_linear_3phase": lambda m, o: m.OneCycleLR(o, max_lr=0.4, epochs=3, steps_per_epoch=10,
                                                          anneal_strategy="linear", three_phase=True, pct_start=0.25),
    "CyclicLR_triangular2": lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=4,
                                                    step_size_down=3, mode="triangular2"),
    "CyclicLR_exp_range": lambda m, o: m.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=0.1, step_size_up=5,
                                                  mode="exp_range", gamma=0.97, base_momentum=0.7),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001),
    "SequentialLR": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=5),
                                                    m.ExponentialLR(o, gamma=0.9),
                                                    m.CosineAnnealingLR(o, T_max=10)], milestones=[5, 12]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=4),
                                                         m.ExponentialLR(o, gamma=0.9)]),
}


def trajectory(lib, name, optimizer, steps=STEPS):
    opt, train_step, params = make(lib, optimizer)
    sched = SCHEDULERS[name](lib.optim.lr_scheduler, opt)
    seen = [(list(sched.get_last_lr()), _momenta(opt))]
    for _ in range(steps):
        train_step()
        sched.step()
        seen.append((list(sched.get_last_lr()), _momenta(opt)))
        assert [g["lr"] for g in opt.param_groups] == seen[-1][0]
    return seen, [p.detach().numpy().copy() for p in params]


def _momenta(opt):
    return [g.get("momentum", g.get("betas")) for g in opt.param_groups]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_trajectory_matches_torch(name, optimizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a right-order loop warns about nothing
        got, got_params = trajectory(nbgrad, name, optimizer)
    want, want_params = trajectory(torch, name, optimizer)
    for step, ((lr_a, m_a), (lr_b, m_b)) in enumerate(zip(got, want)):
        assert lr_a == lr_b, f"step {step}: lr {lr_a} vs {lr_b}"              # the same float operations
        assert m_a == m_b, f"step {step}: momentum {m_a} vs {m_b}"
    assert len({tuple(lrs) for lrs, _ in got}) > 1                 # the schedule moved
    for a, b in zip(got_params, want_params):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
                                  "SequentialLR", "ChainedScheduler", "LambdaLR", "ExponentialLR",
                                  "CyclicLR_triangular2", "CosineAnnealingWarmRestarts"])
def test_state_dict_resumes_the_schedule(name):
    straight, _ = trajectory(nbgrad, name, "sgd", steps=20)
    opt, train_step, _ = make(nbgrad)
    sched = SCHEDULERS[name](nbgrad.optim.lr_scheduler, opt)
    for _ in range(9):
        train_step()
        sched.step()
    buf = io.BytesIO()
    nbgrad.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)   # through a checkpoint
    buf.seek(0)
    ck = nbgrad.load(buf)
    opt2, train_step2, _ = make(nbgrad)
    sched2 = SCHEDULERS[name](nbgrad.optim.lr_scheduler, opt2)
    opt2.load_state_dict(ck["opt"])
    sched2.load_state_dict(ck["sched"])
    assert sched2.get_last_lr() == straight[9][0]
    resumed = []
    for _ in range(11):
        train_step2()
        sched2.step()
        resumed.append(sched2.get_last_lr())
    assert resumed == [lrs for lrs, _ in straight[10:]]


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.96, 0.8, 0.8, 0.81, 0.82, 0.83, 0.84, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7,
               0.7, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    for kwargs in [dict(patience=2, factor=0.5), dict(mode="max", patience=1, cooldown=2, min_lr=[0.01, 0.02]),
                   dict(threshold_mode="abs", threshold=0.05, patience=0, factor=0.3, eps=1e-3)]:
        runs = []
        for lib in (nbgrad, torch):
            opt, train_step, _ = make(lib)
            sched = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
            lrs = []
            for m in metrics:
                train_step()
                sched.step(m)
                lrs.append((sched.get_last_lr(), sched.num_bad_epochs, sched.cooldown_counter, sched.best))
            runs.append(lrs)
        assert runs[0] == runs[1]
        assert len({tuple(r[0]) for r in runs[0]}) > 1


def test_warm_restarts_with_fractional_epochs():
    runs = []
    for lib in (nbgrad, torch):
        opt, train_step, _ = make(lib)
        sched = lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=3, eta_min=0.01)
        out = []
        for epoch in range(6):
            for i in range(4):
                train_step()
                sched.step(epoch + i / 4)
                out.append((sched.T_cur, sched.T_i, sched.last_epoch, sched.get_last_lr()))
        runs.append(out)
    assert runs[0] == runs[1]


def test_step_with_epoch_uses_the_closed_form():
    runs = []
    for lib in (nbgrad, torch):
        opt, train_step, _ = make(lib)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        out = []
        with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)` was not necessary"):
            for epoch in (5, 9, 2):
                train_step()
                sched.step(epoch)
                out.append((sched.last_epoch, sched.get_last_lr()))
        runs.append(out)
    assert runs[0] == runs[1]


def _warning_texts(lib, body):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body(lib)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_warnings_match_torch():
    def scheduler_first(lib):
        opt, train_step, _ = make(lib)
        sched = lib.optim.lr_scheduler.StepLR(opt, 2)
        sched.step()
        train_step()

    def get_lr_outside_step(lib):
        opt, _, _ = make(lib)
        lib.optim.lr_scheduler.ExponentialLR(opt, 0.9).get_lr()

    def overridden_step(lib):
        opt, _, _ = make(lib)
        sched = lib.optim.lr_scheduler.ExponentialLR(opt, 0.9)
        opt.step = lambda: None
        sched.step()

    for body in (scheduler_first, get_lr_outside_step, overridden_step):
        texts = _warning_texts(nbgrad, body)
        assert texts and texts == _warning_texts(torch, body), body.__name__


BAD = [
    lambda m, o: m.ConstantLR(o, factor=1.5),
    lambda m, o: m.LinearLR(o, start_factor=0),
    lambda m, o: m.LinearLR(o, end_factor=2),
    lambda m, o: m.LambdaLR(o, [_lambda]),
    lambda m, o: m.MultiplicativeLR(o, 3),
    lambda m, o: m.ReduceLROnPlateau(o, factor=1.0),
    lambda m, o: m.ReduceLROnPlateau(o, mode="avg"),
    lambda m, o: m.ReduceLROnPlateau(o, threshold_mode="pct"),
    lambda m, o: m.ReduceLROnPlateau(o, min_lr=[0.1]),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=0),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, epochs=0, steps_per_epoch=3),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1),
    lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"),
    lambda m, o: m.OneCycleLR(o, max_lr=[1.0], total_steps=10),
    lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2)], milestones=[3]),
    lambda m, o: m.SequentialLR(o, [], milestones=[]),
    lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.ReduceLROnPlateau(o)], milestones=[3]),
    lambda m, o: m.StepLR("not an optimizer", 2),
    lambda m, o: m.StepLR(o, 2, last_epoch=4),
    lambda m, o: m.CyclicLR(o, 0.1, 1.0, mode="sawtooth"),
    lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0),
    lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0),
    lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, eta_min="0"),
]


@pytest.mark.parametrize("index", range(len(BAD)))
def test_errors_match_torch(index):
    with pytest.raises(Exception) as want:
        BAD[index](torch.optim.lr_scheduler, make(torch)[0])
    with pytest.raises(Exception) as got:
        BAD[index](ours_sched, make(nbgrad)[0])
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_one_cycle_refuses_steps_past_the_end():
    for lib in (nbgrad, torch):
        opt, train_step, _ = make(lib)
        sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
        for _ in range(3):
            train_step()
            sched.step()
        with pytest.raises(ValueError, match="Tried to step 4 times. The specified number of total steps is 3"):
            sched.step()


def test_resume_with_last_epoch():
    runs = []
    for lib in (nbgrad, torch):
        opt, _, _ = make(lib)
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
        sched = lib.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5, last_epoch=3)
        runs.append((sched.last_epoch, sched.get_last_lr(), sched.base_lrs))
    assert runs[0] == runs[1]
