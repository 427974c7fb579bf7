"""The ``Module`` API against ``torch.nn.Module``: forward and forward-pre hooks (order,
prepend, kwargs, replacing values, removal, always_call), full backward hooks and
backward pre-hooks (the grad_input and grad_output PyTorch computes, replacing them,
modules whose inputs need no grad), buffers, tree walks, modes, conversion, lookups by
path, reprs, and state dicts with strict key and shape checks (the return value and the
error texts)."""
import warnings

import numpy as np
import pytest

import nbgrad
from helpers import assert_close, random_array, same_error


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def linear(lib, seed=0, n_in=3, n_out=2):
    m = lib.nn.Linear(n_in, n_out, dtype=lib.float64)
    with lib.no_grad():
        m.weight.copy_(lib.tensor(random_array((n_out, n_in), np.float64, seed)))
        m.bias.copy_(lib.tensor(random_array((n_out,), np.float64, seed + 1)))
    return m


def mlp(lib):
    return lib.nn.Sequential(linear(lib, 0, 3, 4), lib.nn.Tanh(), linear(lib, 2, 4, 2))


def x_of(lib, shape=(5, 3), seed=9, requires_grad=True):
    return lib.tensor(random_array(shape, np.float64, seed), requires_grad=requires_grad)


def numpy_of(v):
    if v is None or isinstance(v, np.ndarray):
        return v
    if isinstance(v, tuple):
        return tuple(numpy_of(a) for a in v)
    return np.array(v.detach().numpy())


def same(a, b):
    a, b = numpy_of(a), numpy_of(b)
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif a is None:
        assert b is None
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# -- forward hooks --------------------------------------------------------------------------------
def test_forward_hooks_order_prepend_kwargs_and_replacement(torch):
    def run(lib):
        m = linear(lib)
        log = []
        m.register_forward_hook(lambda mod, args, out: log.append(("a", mod is m, len(args))))
        m.register_forward_hook(lambda mod, args, out: log.append("b") or out * 2)
        m.register_forward_hook(lambda mod, args, out: log.append("first"), prepend=True)
        m.register_forward_hook(lambda mod, args, kwargs, out: log.append(("kw", sorted(kwargs))), with_kwargs=True)
        pre = m.register_forward_pre_hook(lambda mod, args: log.append("pre") or (args[0] + 1))
        m.register_forward_pre_hook(lambda mod, args: log.append("pre-first"), prepend=True)
        out = m(x_of(lib))
        pre.remove()
        out2 = m(x_of(lib))
        return log, out, out2
    (log, out, out2), (tlog, tout, tout2) = run(nbgrad), run(torch)
    assert log == tlog
    same(out, tout)
    same(out2, tout2)


def test_forward_pre_hook_with_kwargs(torch):
    def run(lib):
        class M(lib.nn.Module):
            def forward(self, x, scale=1.0):
                return x * scale
        m = M()
        m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"scale": kwargs["scale"] * 10}),
                                    with_kwargs=True)
        return m(lib.ones(2), scale=3.0)
    same(run(nbgrad), run(torch))

    def bad(lib):
        m = lib.nn.Identity()
        m.register_forward_pre_hook(lambda mod, args, kwargs: 5, with_kwargs=True)
        m(lib.ones(1))
    same_error(torch, bad)


def test_handles_remove_and_work_as_context_managers():
    m = nbgrad.nn.Linear(2, 2)
    calls = []
    with m.register_forward_hook(lambda *a: calls.append(1)):
        m(nbgrad.ones(1, 2))
    m(nbgrad.ones(1, 2))
    h = m.register_forward_pre_hook(lambda *a: calls.append(2))
    h.remove()
    h.remove()                                 # twice is harmless
    m(nbgrad.ones(1, 2))
    assert calls == [1]


def test_always_call_runs_when_forward_raises(torch):
    def run(lib):
        class Bad(lib.nn.Module):
            def forward(self, x):
                raise ValueError("boom")
        m = Bad()
        log = []
        m.register_forward_hook(lambda mod, args, out: log.append(("always", out)), always_call=True)
        m.register_forward_hook(lambda mod, args, out: log.append("normal"))
        with pytest.raises(ValueError, match="boom"):
            m(lib.ones(1))
        return log
    assert run(nbgrad) == run(torch) == [("always", None)]


def test_hooks_in_submodules_see_their_own_inputs(torch):
    def run(lib):
        model = mlp(lib)
        seen = []
        for name, mod in model.named_modules():
            mod.register_forward_hook(lambda m, a, o, name=name: seen.append((name, tuple(a[0].shape),
                                                                               tuple(o.shape))))
        model(x_of(lib))
        return seen
    assert run(nbgrad) == run(torch)


# -- backward hooks ------------------------------------------------------------------------------
class TwoInOut:
    """A module of two inputs and a tuple of two outputs, in either library."""

    @staticmethod
    def make(lib):
        class M(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = lib.nn.Parameter(lib.tensor(random_array((3,), np.float64, 4)))

            def forward(self, a, b, flag=True):
                return (a * self.w + b).tanh(), (a * b).sum(1)
        return M()


def record_backward(lib, module, inputs, combine, pre=None, post=None):
    """Run ``combine(module(*inputs))`` backward with hooks recording what they get."""
    log = []

    def pre_hook(mod, grad_output):
        log.append(("pre", grad_output))
        return pre(grad_output) if pre else None

    def hook(mod, grad_input, grad_output):
        log.append(("hook", grad_input, grad_output))
        return post(grad_input) if post else None
    module.register_full_backward_pre_hook(pre_hook)
    module.register_full_backward_hook(hook)
    combine(module(*inputs)).backward()
    return log, [t.grad for t in inputs if isinstance(t, lib.Tensor)], [p.grad for p in module.parameters()]


def compare_logs(log, tlog):
    assert [e[0] for e in log] == [e[0] for e in tlog]
    for e, te in zip(log, tlog):
        for a, b in zip(e[1:], te[1:]):
            same(a, b)


def test_full_backward_hook_on_linear(torch):
    def run(lib):
        return record_backward(lib, linear(lib), [x_of(lib)], lambda out: (out ** 2).sum())
    n, t = run(nbgrad), run(torch)
    compare_logs(n[0], t[0])
    for a, b in zip(n[1] + n[2], t[1] + t[2]):
        same(a, b)
    assert [e[0] for e in n[0]] == ["pre", "hook"]


@pytest.mark.parametrize("grads", [(True, True), (True, False), (False, True)])
def test_full_backward_hook_two_inputs_tuple_output(torch, grads):
    def run(lib):
        a = x_of(lib, (4, 3), 1, grads[0])
        b = x_of(lib, (4, 3), 2, grads[1])
        return record_backward(lib, TwoInOut.make(lib), [a, b], lambda out: (out[0] * 3).sum() + out[1].sum())
    n, t = run(nbgrad), run(torch)
    assert [e[0] for e in n[0]] == ["pre", "hook"]
    compare_logs(n[0], t[0])
    for a, b in zip(n[1] + n[2], t[1] + t[2]):
        same(a, b)


def test_backward_hooks_replace_gradients(torch):
    def run(lib):
        return record_backward(lib, linear(lib), [x_of(lib)], lambda out: (out ** 2).sum(),
                               pre=lambda go: (go[0] * 10,), post=lambda gi: (gi[0] + 1,))
    n, t = run(nbgrad), run(torch)
    compare_logs(n[0], t[0])
    for a, b in zip(n[1] + n[2], t[1] + t[2]):
        same(a, b)


def test_backward_hook_when_no_input_requires_grad(torch):
    """The hooks fire from the outputs, with grad_input all None, and PyTorch's warning."""
    def run(lib):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = record_backward(lib, linear(lib), [x_of(lib, requires_grad=False)], lambda out: out.sum())
        return result, [str(w.message) for w in caught]
    (n, nw), (t, tw) = run(nbgrad), run(torch)
    compare_logs(n[0], t[0])
    assert n[0][-1][1] == (None,)
    assert nw == tw
    for a, b in zip(n[2], t[2]):
        same(a, b)


def test_backward_hook_errors(torch):
    def wrong_count(lib):
        m = linear(lib)
        m.register_full_backward_hook(lambda mod, gi, go: (gi[0], gi[0]))
        m(x_of(lib)).sum().backward()
    same_error(torch, wrong_count)

    def wrong_pre_count(lib):
        m = linear(lib)
        m.register_full_backward_pre_hook(lambda mod, go: (go[0], go[0]))
        m(x_of(lib)).sum().backward()
    same_error(torch, wrong_pre_count)


def test_backward_hook_removed_and_in_sequential(torch):
    def run(lib):
        model = mlp(lib)
        log = []
        handles = [mod.register_full_backward_hook(lambda m, gi, go, i=i: log.append((i, gi, go)))
                   for i, mod in enumerate(model)]
        model(x_of(lib)).sum().backward()
        handles[1].remove()
        model(x_of(lib)).sum().backward()
        return log
    n, t = run(nbgrad), run(torch)
    assert [e[0] for e in n] == [e[0] for e in t] == [2, 1, 0, 2, 0]
    for e, te in zip(n, t):
        same(e[1], te[1])
        same(e[2], te[2])


# -- buffers, walks, modes, conversion ----------------------------------------------------------------
def with_buffers(lib):
    class M(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(2, 2)
            self.register_buffer("running", lib.zeros(2))
            self.register_buffer("scratch", lib.ones(3), persistent=False)
            self.register_buffer("nothing", None)
            self.register_buffer("count", lib.tensor(4))
    return M()


def test_buffers_and_state_dict_keys(torch):
    n, t = with_buffers(nbgrad), with_buffers(torch)
    assert list(n.state_dict()) == list(t.state_dict()) == ["running", "count", "lin.weight", "lin.bias"]
    assert [k for k, _ in n.named_buffers()] == [k for k, _ in t.named_buffers()] == ["running", "scratch", "count"]
    assert [k for k, _ in n.named_buffers(prefix="m", recurse=False)] == ["m.running", "m.scratch", "m.count"]
    n.double()
    assert n.running.dtype == nbgrad.float64 and n.scratch.dtype == nbgrad.float64 and n.count.dtype == nbgrad.int64
    assert all(not p.requires_grad for p in n.buffers()) and len(list(n.parameters())) == 2


@pytest.mark.parametrize("name,value", [("a.b", "t"), ("", "t"), (3, "t"), ("lin", "t"), ("x", 5)])
def test_register_buffer_errors(torch, name, value):
    def call(lib):
        m = with_buffers(lib)
        m.register_buffer(name, lib.ones(1) if value == "t" else value)
    same_error(torch, call)


def test_named_modules_children_apply(torch):
    def run(lib):
        shared = lib.nn.Linear(2, 2)
        model = lib.nn.Sequential(shared, lib.nn.Sequential(lib.nn.ReLU(), shared), lib.nn.Tanh())
        seen = []
        model.apply(lambda m: seen.append(type(m).__name__))
        return ([k for k, _ in model.named_modules()], [k for k, _ in model.named_modules(remove_duplicate=False)],
                [k for k, _ in model.named_modules(prefix="net")], [k for k, _ in model.named_children()], seen,
                [k for k, _ in model.named_parameters()])
    assert run(nbgrad) == run(torch)


def test_modes_requires_grad_and_zero_grad():
    model = mlp(nbgrad)
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    assert model.requires_grad_(False) is model and not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    model(x_of(nbgrad)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(p.grad.abs().sum().item() == 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_dtype_keeps_parameter_objects():
    model = mlp(nbgrad)
    params = list(model.parameters())
    assert model.to(nbgrad.float32) is model
    assert [p is q for p, q in zip(params, model.parameters())] == [True] * 4
    assert all(p.dtype == nbgrad.float32 for p in model.parameters())
    model.double()
    assert all(p.dtype == nbgrad.float64 for p in model.parameters())
    model.float()
    assert all(p.dtype == nbgrad.float32 for p in model.parameters())


@pytest.mark.parametrize("call", [
    lambda lib, m: m.get_submodule("0.weight"), lambda lib, m: m.get_submodule("5"),
    lambda lib, m: m.get_parameter("0.nope"), lambda lib, m: m.get_parameter("1"),
    lambda lib, m: m.get_buffer("0.weight"), lambda lib, m: m.get_buffer("9.x")])
def test_lookup_errors(torch, call):
    same_error(torch, lambda lib: call(lib, mlp(lib)))


def test_lookups():
    model = nbgrad.nn.Sequential(nbgrad.nn.Linear(2, 2), with_buffers(nbgrad))
    assert model.get_submodule("1.lin") is model[1].lin and model.get_submodule("") is model
    assert model.get_parameter("1.lin.bias") is model[1].lin.bias
    assert model.get_buffer("1.running") is model[1].running


def test_reprs_match_torch(torch):
    def run(lib):
        class Custom(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = lib.nn.Linear(3, 4, bias=False)

            def extra_repr(self):
                return "alpha=1\nbeta=2"
        return [repr(m) for m in (mlp(lib), Custom(), lib.nn.Sequential(), lib.nn.Linear(2, 3),
                                  lib.nn.Sequential(lib.nn.Sequential(lib.nn.ReLU())))]
    assert run(nbgrad) == run(torch)


# -- state dicts -------------------------------------------------------------------------------------
def test_state_dict_round_trip_into_torch_layout(torch):
    n, t = mlp(nbgrad), mlp(torch)
    sd = n.state_dict()
    assert list(sd) == list(t.state_dict())
    fresh = nbgrad.nn.Sequential(nbgrad.nn.Linear(3, 4, dtype=nbgrad.float64), nbgrad.nn.Tanh(),
                                 nbgrad.nn.Linear(4, 2, dtype=nbgrad.float64))
    params = list(fresh.parameters())
    result = fresh.load_state_dict(sd)
    assert repr(result) == repr(t.load_state_dict(t.state_dict())) == "<All keys matched successfully>"
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert all(p is q for p, q in zip(params, fresh.parameters()))     # copied in place
    same(fresh(x_of(nbgrad)), n(x_of(nbgrad)))
    assert all(not v.requires_grad for v in sd.values())
    assert all(v.requires_grad for v in n.state_dict(keep_vars=True).values())


def _edited(lib, edit):
    m = mlp(lib)
    sd = dict(m.state_dict())
    edit(lib, sd)
    return m, sd


EDITS = {
    "missing": lambda lib, sd: sd.pop("0.bias"),
    "unexpected": lambda lib, sd: sd.update({"9.weight": lib.ones(1), "extra": lib.ones(2)}),
    "both": lambda lib, sd: (sd.pop("2.weight"), sd.update({"x": lib.ones(1)})),
    "shape": lambda lib, sd: sd.update({"0.weight": lib.ones(3, 4, dtype=lib.float64)}),
    "shape_and_missing": lambda lib, sd: (sd.update({"2.bias": lib.ones(5, dtype=lib.float64)}), sd.pop("0.bias")),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_load_state_dict_strict_errors(torch, edit):
    def call(lib):
        m, sd = _edited(lib, EDITS[edit])
        m.load_state_dict(sd)
    same_error(torch, call)


@pytest.mark.parametrize("edit", ["missing", "unexpected", "both"])
def test_load_state_dict_not_strict_returns_the_keys(torch, edit):
    results = []
    for lib in (nbgrad, torch):
        m, sd = _edited(lib, EDITS[edit])
        results.append(m.load_state_dict(sd, strict=False))
    assert repr(results[0]) == repr(results[1])
    assert results[0].missing_keys == results[1].missing_keys
    assert results[0].unexpected_keys == results[1].unexpected_keys


def test_linear_size_mismatch_text(torch):
    def call(lib):
        lib.nn.Linear(2, 3).load_state_dict({"weight": lib.ones(3, 3), "bias": lib.ones(3)})
    same_error(torch, call)
    with pytest.raises(RuntimeError, match="Error\\(s\\) in loading state_dict for Linear:\n\tsize mismatch for "
                                           "weight: copying a param with shape"):
        call(nbgrad)
