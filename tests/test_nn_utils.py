"""``nn.utils`` against ``torch.nn.utils``: gradient clipping by norm (every norm type,
clipping and not, non-finite norms) and by value, and parameters to a vector and back."""
import math

import numpy as np
import pytest

import nbgrad
from helpers import assert_close, random_array, same_error


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


SHAPES = [(3, 4), (4,), (), (2, 1, 3)]


def params(lib, scale=1.0, with_grad=(True, True, True, False)):
    """The same parameters and gradients in ``lib``; the last has no gradient."""
    out = []
    for i, (shape, has) in enumerate(zip(SHAPES, with_grad)):
        p = lib.nn.Parameter(lib.tensor(random_array(shape, np.float64, i)))
        if has:
            p.grad = lib.tensor(scale * random_array(shape, np.float64, 10 + i))
        out.append(p)
    return out


@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 3.0, 0.5, 0])
@pytest.mark.parametrize("max_norm", [0.1, 1e6])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    n, t = params(nbgrad), params(torch)
    total = nbgrad.nn.utils.clip_grad_norm_(n, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(t, max_norm, norm_type)
    assert_close(total, ttotal, rtol=1e-12, atol=1e-14)
    for p, tp in zip(n, t):
        assert_close(p.grad, tp.grad, rtol=1e-12, atol=1e-14)
    assert n[-1].grad is None
    if max_norm < 1 and norm_type == 2.0:              # clipped to the norm asked for
        assert abs(nbgrad.nn.utils.get_total_norm([p.grad for p in n[:-1]]).item() - max_norm) < 1e-5


def test_clip_grad_norm_single_tensor_and_no_grads(torch):
    for lib in (nbgrad, torch):
        p = lib.nn.Parameter(lib.ones(3))
        p.grad = lib.full((3,), 4.0)
        total = lib.nn.utils.clip_grad_norm_(p, 1.0)
        assert abs(total.item() - math.sqrt(48)) < 1e-6 and abs(p.grad.square().sum().item() - 1) < 1e-5
        empty = lib.nn.utils.clip_grad_norm_([lib.nn.Parameter(lib.ones(2))], 1.0)
        assert empty.item() == 0.0 and empty.dtype == lib.float32
    messages = []
    for lib in (nbgrad, torch):
        with pytest.warns(UserWarning) as record:
            lib.nn.utils.clip_grad_norm_((p for p in []), 1.0)
        messages.append(str(record[0].message))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_norm(torch, bad):
    def clip(lib, error):
        ps = params(lib)
        ps[0].grad[0, 0] = bad
        return lib.nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=error), ps
    same_error(torch, lambda lib: clip(lib, True))
    (total, n), (ttotal, t) = clip(nbgrad, False), clip(torch, False)
    assert_close(total, ttotal)
    for p, tp in zip(n, t):
        assert_close(p.grad, tp.grad)


def test_clip_grad_value_matches_torch(torch):
    n, t = params(nbgrad, scale=3.0), params(torch, scale=3.0)
    assert nbgrad.nn.utils.clip_grad_value_(n, 1.5) is None
    torch.nn.utils.clip_grad_value_(t, 1.5)
    for p, tp in zip(n, t):
        assert_close(p.grad, tp.grad, rtol=0, atol=0)
    assert max(p.grad.abs().max().item() for p in n[:-1]) == 1.5
    single = nbgrad.nn.Parameter(nbgrad.ones(2))
    single.grad = nbgrad.tensor([-5.0, 0.25])
    nbgrad.nn.utils.clip_grad_value_(single, 1)
    assert single.grad.tolist() == [-1.0, 0.25]


def test_clip_keeps_the_gradient_objects():
    ps = params(nbgrad, scale=10.0)
    grads = [p.grad for p in ps]
    nbgrad.nn.utils.clip_grad_norm_(ps, 0.5)
    nbgrad.nn.utils.clip_grad_value_(ps, 0.1)
    assert all(p.grad is g for p, g in zip(ps, grads))


def test_parameters_to_vector_and_back(torch):
    model, tmodel = nbgrad.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with nbgrad.no_grad():
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            p.copy_(nbgrad.tensor(tp.detach().numpy()))
    vec, tvec = nbgrad.nn.utils.parameters_to_vector(model.parameters()), \
        torch.nn.utils.parameters_to_vector(tmodel.parameters())
    assert_close(vec, tvec, rtol=0, atol=0)
    assert vec.grad_fn is not None                         # differentiable, like torch's
    (vec * nbgrad.arange(8.0)).sum().backward()
    assert model.weight.grad.reshape(-1).tolist() == [0.0, 1, 2, 3, 4, 5] and model.bias.grad.tolist() == [6.0, 7.0]

    new = nbgrad.arange(8.0) / 10
    nbgrad.nn.utils.vector_to_parameters(new, model.parameters())
    assert model.weight.tolist() == (nbgrad.arange(6.0) / 10).reshape(2, 3).tolist()
    assert model.bias.tolist() == (nbgrad.arange(6.0, 8.0) / 10).tolist() and isinstance(model.weight, nbgrad.nn.Parameter)
    with nbgrad.no_grad():
        new[0] = 5.0                                        # the parameters share the vector's memory
    assert model.weight[0, 0].item() == 5.0
    out = model(nbgrad.ones(1, 3))
    assert out.shape == (1, 2)


def test_vector_to_parameters_needs_a_tensor(torch):
    same_error(torch, lambda lib: lib.nn.utils.vector_to_parameters([1.0, 2.0], [lib.nn.Parameter(lib.ones(2))]))
