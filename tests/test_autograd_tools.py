"""inference_mode, saved-tensor hooks, save_on_cpu, checkpoint, grad_fn._saved_*, the
non-leaf ``.grad`` warning: against PyTorch's behaviour and texts."""
import warnings

import numpy as np
import pytest

import nbgrad
from nbgrad.autograd.graph import save_on_cpu
from nbgrad.utils.checkpoint import checkpoint, checkpoint_sequential

torch = pytest.importorskip("torch")


def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


def test_inference_mode_marks_results_and_refuses_them_in_autograd():
    x = nbgrad.ones(2, requires_grad=True)
    tx = torch.ones(2, requires_grad=True)
    with nbgrad.inference_mode():
        assert nbgrad.is_inference_mode_enabled() and not nbgrad.is_grad_enabled()
        b = x * 2
        with nbgrad.inference_mode(False):
            assert not nbgrad.is_inference_mode_enabled()
    with torch.inference_mode():
        tb = tx * 2
    assert b.is_inference() and not b.requires_grad
    assert not nbgrad.is_inference_mode_enabled() and nbgrad.is_grad_enabled()
    assert not b.clone().is_inference() and not x.is_inference()
    assert _error(lambda: (b * x).sum().backward()) == _error(lambda: (tb * tx).sum().backward())
    (b.clone() * x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_inference_mode_as_decorator():
    @nbgrad.inference_mode
    def f(t):
        return t * 2

    @nbgrad.inference_mode()
    def g(t):
        return t * 3
    x = nbgrad.ones(1, requires_grad=True)
    assert f(x).is_inference() and g(x).is_inference() and not f(x).requires_grad


def test_saved_tensors_hooks_see_every_saved_tensor():
    for lib in (nbgrad, torch):
        x = lib.tensor([0.5, 1.5], requires_grad=True)
        packed = []

        def pack(t):
            packed.append(t)
            return len(packed) - 1

        def unpack(i):
            return packed[i] * 1          # a different tensor of the same values
        hooks = nbgrad.autograd.graph.saved_tensors_hooks if lib is nbgrad else torch.autograd.graph.saved_tensors_hooks
        with hooks(pack, unpack):
            y = (x * x).sin().exp().sum()
        y.backward()
        if lib is nbgrad:
            ours, n_ours = x.grad.numpy(), len(packed)
        else:
            theirs, n_theirs = x.grad.numpy(), len(packed)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert n_ours == n_theirs


def test_save_on_cpu_keeps_copies():
    x = nbgrad.tensor([0.5, 1.5], requires_grad=True)
    with save_on_cpu(pin_memory=False):
        y = (x * x).tanh()
    assert not any(isinstance(t, nbgrad.Tensor) for t in y.grad_fn._saved)      # kept packed
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([0.5, 1.5]) / np.cosh(np.array([0.5, 1.5]) ** 2) ** 2,
                               rtol=1e-5)


def _block(lib):
    def f(x, w):
        h = lib.nn.functional.dropout(lib.tanh(x @ w), p=0.3, training=True)
        return (h * h).exp().sum(1)
    return f


def test_checkpoint_recomputes_and_matches_plain_backward():
    rng = np.random.default_rng(0)
    xv, wv = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    grads = []
    for use_checkpoint in (False, True):
        nbgrad.manual_seed(7)
        x, w = nbgrad.tensor(xv, requires_grad=True), nbgrad.tensor(wv, requires_grad=True)
        calls = []

        def f(a, b):
            calls.append(1)
            return _block(nbgrad)(a, b)
        out = checkpoint(f, x, w, use_reentrant=False) if use_checkpoint else f(x, w)
        assert len(calls) == 1
        (out * nbgrad.tensor([1.0, 2.0, 3.0, 4.0], dtype=nbgrad.float64)).sum().backward()
        assert len(calls) == (2 if use_checkpoint else 1)          # recomputed once, in backward
        grads.append((out.detach().numpy(), x.grad.numpy(), w.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_checkpoint_keeps_no_saved_tensors_and_warns_without_use_reentrant():
    x = nbgrad.ones(3, requires_grad=True)
    with pytest.warns(UserWarning, match="the use_reentrant parameter should be passed explicitly"):
        y = checkpoint(lambda t: (t * t).sin(), x)
    assert not any(isinstance(t, nbgrad.Tensor) for t in y.grad_fn._saved)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(1.0), rtol=1e-6)


def test_checkpoint_sequential():
    nbgrad.manual_seed(0)
    model = nbgrad.nn.Sequential(nbgrad.nn.Linear(3, 4), nbgrad.nn.Tanh(), nbgrad.nn.Linear(4, 2), nbgrad.nn.Tanh())
    x = nbgrad.ones(5, 3)
    model(x).sum().backward()
    plain = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    checkpoint_sequential(model, 2, x, use_reentrant=False).sum().backward()
    for a, p in zip(plain, model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), a, rtol=1e-6)


def test_saved_attributes_as_pytorch_names_them():
    for lib in (nbgrad, torch):
        x = lib.tensor([0.5, 1.5], requires_grad=True)
        m = lib.tensor([[1.0, 2.0]], requires_grad=True)
        z = x.exp()
        assert x.mul(x).grad_fn._saved_self is x
        assert float(z.grad_fn._saved_result[0]) == pytest.approx(float(z[0]))
        assert float((x * 2).grad_fn._saved_other) == 2
        assert (m @ m.t()).grad_fn._saved_self is m and (m @ m.t()).grad_fn._saved_mat2.shape == (2, 1)
        assert (x @ x).grad_fn._saved_tensor is x
        with pytest.raises(AttributeError):
            x.exp().grad_fn._saved_other
    assert "_saved_mat2" in dir((m @ m.t()).grad_fn)


def test_non_leaf_grad_warns_as_pytorch():
    texts = []
    for lib in (nbgrad, torch):
        y = lib.ones(2, requires_grad=True) * 2
        with pytest.warns(UserWarning) as record:
            assert y.grad is None
        texts.append(str(record[0].message))
        y.retain_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert y.grad is None
            y.sum().backward()
            assert y.grad.tolist() == [1.0, 1.0]
    assert texts[1].startswith(texts[0])


def test_make_dot_show_saved_labels_like_torchviz():
    pytest.importorskip("graphviz")
    from nbgrad.viz import make_dot
    x = nbgrad.tensor([0.5, 1.5], requires_grad=True)
    y = (x * x).exp()
    source = make_dot(y, params={"x": x}, show_saved=True).source
    assert "result\n (2)" in source             # exp's saved output, named as torchviz names it


def test_saved_attributes_of_reductions_and_losses():
    for lib in (nbgrad, torch):
        x = lib.tensor([[0.5, 1.5, -1.0], [2.0, 0.0, 1.0]], requires_grad=True)
        for y in (x.softmax(1), x.log_softmax(1), x.std(1), x.amax(1), x.logsumexp(1), x.max(), x.prod()):
            np.testing.assert_allclose(y.grad_fn._saved_result.detach().numpy(), y.detach().numpy())
        for y in (x.std(1), x.var(1), x.amax(1), x.logsumexp(1), x.max()):
            assert y.grad_fn._saved_self is x
        assert x.softmax(1).grad_fn._saved_dim == 1
        loss = lib.nn.functional.nll_loss(x, lib.tensor([2, 0]))
        assert loss.grad_fn._saved_self is x and loss.grad_fn._saved_target.tolist() == [2, 0]
        assert lib.addmm(x[0], x.t(), x).grad_fn._saved_alpha == 1


def test_saved_output_unpacks_to_a_new_tensor_object():
    """Autograd mechanics notes: ``y.grad_fn._saved_result is y`` is False, same data and grad_fn."""
    for lib in (nbgrad, torch):
        x = lib.tensor([0.5, 1.5], requires_grad=True)
        y = x.exp()
        r = y.grad_fn._saved_result
        assert y.equal(r) and r is not y and r.grad_fn is y.grad_fn and r.requires_grad
        y.add_(1)
        assert r._version == y._version == 1 and r.equal(y)
        assert x.pow(2).grad_fn._saved_self is x
