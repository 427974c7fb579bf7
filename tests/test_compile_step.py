"""A whole training step as one ``nbgrad.compile`` call: ``zero_grad``, loss, ``backward`` and
``opt.step()`` inside the compiled function (``nbgrad/compiler/effects.py``). After N compiled
steps, gradients, parameters and optimizer state equal N eager steps; the effects happen in
program order with PyTorch's ``.grad`` semantics; what cannot be replayed breaks the graph."""
import re
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.compiler import GraphBreak
from benchmarks.workloads import _mlp_loss

F = nbgrad.nn.functional
RNG = np.random.default_rng(7)
X = RNG.standard_normal((16, 12)).astype(np.float32)
Y = RNG.integers(0, 4, 16)
INIT = [RNG.standard_normal(s).astype(np.float32) * 0.4 for s in [(10, 12), (10,), (4, 10), (4,)]]

OPTIMIZERS = {
    "sgd_momentum": lambda lib, ps: lib.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "sgd_nesterov": lambda lib, ps: lib.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda lib, ps: lib.optim.Adam(ps, lr=0.01),
    "adam_amsgrad": lambda lib, ps: lib.optim.Adam(ps, lr=0.01, weight_decay=0.01, amsgrad=True),
    "adamw": lambda lib, ps: lib.optim.AdamW(ps, lr=0.01),
}


def _model(lib):
    model = lib.nn.Sequential(lib.nn.Linear(12, 10), lib.nn.ReLU(), lib.nn.Linear(10, 4))
    with lib.no_grad():
        for p, v in zip(model.parameters(), INIT):
            p.copy_(lib.tensor(v))
    return model


def _setup(lib, optimizer, scheduler=False):
    model = _model(lib)
    opt = OPTIMIZERS[optimizer](lib, model.parameters())
    sched = lib.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if scheduler else None
    return model, opt, sched


def _step_fn(lib, model, opt):
    def train_step(x, y):
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return train_step


def _state(opt):
    """The optimizer's state as arrays, in parameter order."""
    out = []
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in sorted(opt.state[p].items()):
                out.append((k, np.array(v.detach().numpy() if hasattr(v, "detach") else v)))
    return out


def _snapshot(model, opt, losses):
    return (np.array(losses), [p.detach().numpy().copy() for p in model.parameters()],
            [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()], _state(opt))


def _assert_same(a, b, rtol=1e-6, atol=1e-7):
    """Equal to float32 rounding: the compiled cross-entropy is one fused kernel (another summation order)."""
    np.testing.assert_allclose(a[0], b[0], rtol=rtol, atol=atol)
    for u, v in zip(a[1], b[1]):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)
    for u, v in zip(a[2], b[2]):
        assert (u is None) == (v is None)
        if u is not None:
            np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)
    assert [k for k, _ in a[3]] == [k for k, _ in b[3]]
    for (_, u), (_, v) in zip(a[3], b[3]):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


def _train(optimizer, scheduler, compiled, steps=5):
    model, opt, sched = _setup(nbgrad, optimizer, scheduler)
    step = _step_fn(nbgrad, model, opt)
    if compiled:
        step = nbgrad.compile(step, fullgraph=True)
    x, y = nbgrad.tensor(X), nbgrad.tensor(Y)
    losses = []
    for _ in range(steps):
        losses.append(float(step(x, y)))
        if sched is not None:
            sched.step()
    return _snapshot(model, opt, losses), step


@pytest.mark.parametrize("scheduler", [False, True], ids=["constant_lr", "step_lr"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_compiled_steps_equal_eager_steps(optimizer, scheduler):
    eager, _ = _train(optimizer, scheduler, False)
    ours, step = _train(optimizer, scheduler, True)
    _assert_same(ours, eager)
    assert step._captures == 1 and len(step._entries) == 1      # captured once, then replayed


def test_compiled_steps_agree_with_pytorch():
    ours, _ = _train("adam", True, True)
    model, opt, sched = _setup(torch, "adam", True)
    step = _step_fn(torch, model, opt)
    x, y = torch.tensor(X), torch.tensor(Y)
    losses = []
    for _ in range(5):
        losses.append(step(x, y).item())
        sched.step()
    theirs = (np.array(losses), [p.detach().numpy() for p in model.parameters()],
              [p.grad.numpy() for p in model.parameters()], _state(opt))
    _assert_same(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_plain_ops_mlp_of_the_benchmarks():
    """``benchmarks.workloads``' MLP loss with parameters as arguments, AdamW over them."""
    x = RNG.standard_normal((32, 12)).astype(np.float32)
    onehot = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 32)]
    init = [INIT[0].T.copy(), INIT[1], INIT[2].T.copy(), INIT[3]]
    results = []
    for compiled in (False, True):
        params = [nbgrad.tensor(v, requires_grad=True) for v in init]
        opt = nbgrad.optim.AdamW(params, lr=0.01)
        X_, onehot_ = nbgrad.tensor(x), nbgrad.tensor(onehot)

        def step(*ps):
            opt.zero_grad()
            loss = _mlp_loss(nbgrad.log_softmax, nbgrad.relu, X_, onehot_, *ps)
            loss.backward()
            opt.step()
            return loss
        if compiled:
            step = nbgrad.compile(step, fullgraph=True)
        losses = [float(step(*params)) for _ in range(4)]
        results.append((np.array(losses), [p.detach().numpy().copy() for p in params],
                        [p.grad.numpy().copy() for p in params], _state(opt)))
    _assert_same(results[1], results[0], rtol=1e-6, atol=1e-7)


def test_grad_accumulates_without_zero_grad_and_the_loss_is_detached():
    """.grad None -> the gradient, then added at every call, as eager backward does; the
    returned loss has eager's value and no grad_fn."""
    grads, values = [], []
    for compiled in (False, True):
        model = _model(nbgrad)
        x, y = nbgrad.tensor(X), nbgrad.tensor(Y)

        def f(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        losses = [g(x, y) for _ in range(3)]
        values.append([float(v) for v in losses])
        grads.append([p.grad.numpy().copy() for p in model.parameters()])
        if compiled:
            assert all(v.grad_fn is None and not v.requires_grad for v in losses)
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("where", ["start_keep", "end", "model"])
def test_zero_grad_in_program_order(where):
    """``zero_grad(set_to_none=False)`` at the start, ``zero_grad()`` after the step, and
    ``model.zero_grad()``: each happens where the function calls it."""
    results = []
    for compiled in (False, True):
        model, opt, _ = _setup(nbgrad, "sgd_momentum")
        x, y = nbgrad.tensor(X), nbgrad.tensor(Y)

        def f(x, y):
            if where == "start_keep":
                opt.zero_grad(set_to_none=False)
            elif where == "model":
                model.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if where == "end":
                opt.zero_grad()
            return loss
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        losses = [float(g(x, y)) for _ in range(3)]
        results.append(_snapshot(model, opt, losses))
    _assert_same(results[1], results[0])
    if where == "end":
        assert all(p.grad is None for p in model.parameters())


def test_lr_and_step_counters_are_read_at_every_call():
    """Changing the lr by hand and a scheduler stepping inside the function are seen."""
    results = []
    for compiled in (False, True):
        model, opt, _ = _setup(nbgrad, "adam")
        sched = nbgrad.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
        step = _step_fn(nbgrad, model, opt)

        def f(x, y):
            loss = step(x, y)
            sched.step()
            return loss
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        x, y = nbgrad.tensor(X), nbgrad.tensor(Y)
        losses = []
        for i in range(4):
            losses.append(float(g(x, y)))
            if i == 1:
                opt.param_groups[0]["lr"] = 0.05
        results.append(_snapshot(model, opt, losses) + (opt.param_groups[0]["lr"], sched.last_epoch))
    _assert_same(results[1], results[0])
    assert results[1][4:] == results[0][4:]
    assert results[1][3][0][0] == "exp_avg" and float(dict(results[1][3])["step"]) == 4.0


def test_capture_itself_changes_nothing():
    """``explain`` captures without calling: parameters, gradients and state stay as they were."""
    model, opt, _ = _setup(nbgrad, "adam")
    x, y = nbgrad.tensor(X), nbgrad.tensor(Y)
    _step_fn(nbgrad, model, opt)(x, y)          # one eager step: gradients and state exist
    before = _snapshot(model, opt, [])
    text = nbgrad.compile(_step_fn(nbgrad, model, opt)).explain(x, y)
    assert "then Adam.step()" in text and ".backward()" in text
    _assert_same(_snapshot(model, opt, []), before)


def test_gradients_reach_arguments_hooks_and_the_graph_outside():
    """A leaf argument accumulates its gradient; a hook on it sees it; an argument computed
    outside the function passes its gradient on into that graph."""
    results = []
    for compiled in (False, True):
        w = nbgrad.tensor(INIT[0], requires_grad=True)
        leaf = nbgrad.tensor(X, requires_grad=True)
        seen = []
        w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))

        def f(x, h):
            loss = ((x @ w.t()).tanh() * h.sum()).mean()
            loss.backward()
            return loss
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        a = nbgrad.tensor(INIT[1], requires_grad=True)
        a.register_hook(lambda grad: grad * 2)
        for _ in range(2):
            g(leaf * 3, a)                          # leaf * 3: a non-leaf argument
        results.append((w.grad.numpy(), a.grad.numpy(), leaf.grad.numpy(), seen))
    for u, v in zip(results[1][:3], results[0][:3]):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    assert len(results[1][3]) == len(results[0][3]) == 2


def test_what_cannot_be_replayed_breaks_the_graph():
    model, opt, _ = _setup(nbgrad, "sgd_momentum")
    x, y = nbgrad.tensor(X), nbgrad.tensor(Y)

    def reads_params_after_step(x, y):
        loss = _step_fn(nbgrad, model, opt)(x, y)
        return loss + (x @ model[0].weight.t()).sum()       # the updated weight

    def clips(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        nbgrad.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def two_backwards(x, y):
        F.cross_entropy(model(x), y).backward()
        F.cross_entropy(model(x), y).backward()

    for fn, text in [(reads_params_after_step, "reads a parameter after SGD.step()"),
                     (clips, "reading .grad after loss.backward()"),
                     (two_backwards, "a second backward")]:
        with pytest.raises(GraphBreak, match=re.escape(text)):
            nbgrad.compile(fn, fullgraph=True)(x, y)
    # without fullgraph: one warning, then eager's result
    eager_model, eager_opt, _ = _setup(nbgrad, "sgd_momentum")
    expected = float(_step_fn(nbgrad, eager_model, eager_opt)(x, y)) + float((x @ eager_model[0].weight.t()).sum())
    model, opt, _ = _setup(nbgrad, "sgd_momentum")
    with pytest.warns(UserWarning, match="graph break"):
        got = nbgrad.compile(reads_params_after_step)(x, y)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_errors_are_eagers():
    model = _model(nbgrad)
    x = nbgrad.tensor(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
            nbgrad.compile(lambda x: model(x).backward())(x)
        with nbgrad.no_grad():
            with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
                nbgrad.compile(lambda x: model(x).sum().backward())(x)


def test_a_new_batch_size_recaptures():
    model, opt, _ = _setup(nbgrad, "adamw")
    step = nbgrad.compile(_step_fn(nbgrad, model, opt), fullgraph=True)
    eager_model, eager_opt, _ = _setup(nbgrad, "adamw")
    eager = _step_fn(nbgrad, eager_model, eager_opt)
    for n in (16, 8, 16):
        x, y = nbgrad.tensor(X[:n]), nbgrad.tensor(Y[:n])
        assert float(step(x, y)) == float(eager(x, y))
    assert step._captures == 2
    _assert_same(_snapshot(model, opt, []), _snapshot(eager_model, eager_opt, []))


_opt = None


def _global_step(model, x, y):
    _opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    _opt.step()


def test_a_new_optimizer_bound_to_the_same_name_recaptures():
    """The optimizer named by a global (or a closure cell) is guarded: rebinding the name to
    another optimizer recaptures, and the new one steps."""
    global _opt
    model = _model(nbgrad)
    x, y = nbgrad.tensor(X), nbgrad.tensor(Y)
    step = nbgrad.compile(_global_step, fullgraph=True)
    first = _opt = nbgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step(model, x, y)
    buffers = [v["momentum_buffer"].numpy().copy() for v in first.state.values()]
    second = _opt = nbgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step(model, x, y)
    assert step._captures == 2 and len(second.state) == 4
    for b, v in zip(buffers, first.state.values()):
        np.testing.assert_array_equal(b, v["momentum_buffer"].numpy())


def test_a_loss_that_is_one_fused_loop():
    """A graph that is one fused loop computes its gradients in the forward pass (the joint
    pass): the backward inside the function takes them from there."""
    results = []
    for compiled in (False, True):
        w = nbgrad.tensor(INIT[0].astype(np.float64), requires_grad=True)
        opt = nbgrad.optim.SGD([w], lr=0.01, momentum=0.5)

        def f(w, scale):
            opt.zero_grad()
            loss = ((w * scale) ** 3 + 7 * w ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        losses = [float(g(w, 0.5)) for _ in range(3)]
        results.append((losses, w.detach().numpy().copy(), w.grad.numpy().copy()))
        if compiled:
            assert list(g._entries.values())[0].program.joint is not None
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12)
    np.testing.assert_allclose(results[1][2], results[0][2], rtol=1e-12)


def test_effects_without_a_backward_inside_keep_the_output_differentiable():
    """``zero_grad`` inside and ``backward`` outside: the call records its node as any compiled
    call does, and the reset happens at the call."""
    results = []
    for compiled in (False, True):
        model, opt, _ = _setup(nbgrad, "adam")
        x, y = nbgrad.tensor(X), nbgrad.tensor(Y)

        def f(x, y):
            opt.zero_grad()
            return F.cross_entropy(model(x), y)
        g = nbgrad.compile(f, fullgraph=True) if compiled else f
        losses = []
        for _ in range(3):
            loss = g(x, y)
            assert loss.grad_fn is not None
            loss.backward()
            opt.step()
            losses.append(float(loss))
        results.append(_snapshot(model, opt, losses))
    _assert_same(results[1], results[0])


def test_a_capture_that_breaks_leaves_the_gradients_as_they_were():
    model, opt, _ = _setup(nbgrad, "sgd_momentum")
    x, y = nbgrad.tensor(X), nbgrad.tensor(Y)
    _step_fn(nbgrad, model, opt)(x, y)
    grads = [p.grad for p in model.parameters()]

    def f(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        print(loss)                             # data-dependent: a graph break
    assert nbgrad.compile(f).explain(x, y).startswith("graph break")
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
