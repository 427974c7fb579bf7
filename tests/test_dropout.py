"""Dropout variants against PyTorch's semantics: element-wise (``Dropout``), channel-wise
(``dropout1d/2d/3d``: whole feature maps zeroed, the rest scaled by ``1/(1-p)``), alpha
dropout (PyTorch's affine correction, mean and variance kept); eval and p=0 are the identity
(the same tensor), p=1 zeroes, gradients are the mask times the scale, error and warning texts."""
import warnings

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
import nbgrad.nn.functional as F
from helpers import same_error


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def test_dropout_scales_kept_and_gradient_is_the_mask():
    nbgrad.manual_seed(0)
    x = nbgrad.ones(200, 100, requires_grad=True)
    y = F.dropout(x, 0.3)
    values = y.detach().numpy()
    assert set(np.unique(values)) == {0.0, np.float32(1.0 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.01
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), values)          # d(x * m / (1-p)) / dx = m / (1-p)


@pytest.mark.parametrize("fn,shape,spatial", [("dropout1d", (8, 50, 6), 1), ("dropout2d", (8, 50, 3, 4), 2),
                                              ("dropout3d", (8, 50, 2, 3, 2), 3), ("dropout1d", (50, 6), 1),
                                              ("dropout3d", (50, 2, 3, 2), 3)])
def test_channel_dropout_zeroes_whole_channels(fn, shape, spatial):
    nbgrad.manual_seed(1)
    x = nbgrad.ones(*shape, requires_grad=True)
    y = getattr(F, fn)(x, p=0.4)
    v = y.detach().numpy()
    maps = v.reshape(-1, int(np.prod(shape[-spatial:])))
    assert (maps.min(1) == maps.max(1)).all()                          # one decision per channel
    assert set(np.unique(maps[:, 0])) == {0.0, np.float32(1.0 / 0.6)}
    assert abs((maps[:, 0] == 0).mean() - 0.4) < 0.1
    y.backward(nbgrad.ones(*shape))
    assert np.array_equal(x.grad.numpy(), v)


@pytest.mark.parametrize("name", ["Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"])
def test_modules_eval_identity_repr_and_errors(torch, name):
    shape = {"Dropout1d": (2, 3, 4), "Dropout2d": (2, 3, 4, 4), "Dropout3d": (2, 3, 2, 2, 2)}.get(name, (2, 3, 4, 4))
    m = getattr(nn, name)(0.3)
    x = nbgrad.randn(*shape)
    m.eval()
    assert m(x) is x
    m.train()
    assert m(x).shape == x.shape and not np.array_equal(m(x).numpy(), x.numpy())
    assert getattr(nn, name)(0.0)(x) is x
    for kw in ({}, dict(p=0.2, inplace=True)):
        assert repr(getattr(nn, name)(**kw)) == repr(getattr(torch.nn, name)(**kw))
    same_error(torch, lambda lib: getattr(lib.nn, name)(p=1.5))
    same_error(torch, lambda lib: getattr(lib.nn, name)(p=-0.1))


def test_p_one_zeroes_and_inplace():
    for fn in (F.dropout1d, F.dropout2d, F.alpha_dropout):
        x = nbgrad.randn(2, 3, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert (fn(x, 1.0, True).numpy() == 0).all()
    x = nbgrad.ones(4, 5, 6)
    assert F.dropout1d(x, 0.5, inplace=True) is x and set(np.unique(x.numpy())) <= {0.0, 2.0}


def test_alpha_dropout_keeps_mean_and_variance():
    """PyTorch's formula: kept ``x*a + alpha*a*p``, dropped ``alpha*a*(p-1)``, with
    ``a = ((alpha^2 p + 1)(1-p))^-1/2``: a standard normal input stays (close to) standard."""
    nbgrad.manual_seed(3)
    p, alpha = 0.2, 1.7580993408473766
    a = 1.0 / np.sqrt((alpha ** 2 * p + 1) * (1 - p))
    x = nbgrad.randn(400, 500, dtype=nbgrad.float64)
    y = F.alpha_dropout(x, p, training=True).numpy()
    dropped = np.isclose(y, alpha * a * (p - 1), rtol=0, atol=1e-12)
    kept = ~dropped
    np.testing.assert_allclose(y[kept], x.numpy()[kept] * a + alpha * a * p, rtol=1e-12)
    assert abs(dropped.mean() - p) < 0.01 and abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01
    assert F.alpha_dropout(x, p) is x                                     # training=False by default
    f = F.feature_alpha_dropout(nbgrad.randn(20, 30, 5, 5), 0.5, training=True).numpy().reshape(600, 25)
    assert np.isclose(f, alpha * (1 / np.sqrt((alpha ** 2 * 0.5 + 1) * 0.5)) * -0.5).all(1).mean() > 0.3


def test_errors_and_warnings_as_torch(torch):
    same_error(torch, lambda lib: lib.nn.functional.dropout1d(lib.ones(2, 3, 4, 5)))
    same_error(torch, lambda lib: lib.nn.functional.dropout2d(lib.ones(2, 3, 4, 5), p=2))
    same_error(torch, lambda lib: lib.nn.functional.alpha_dropout(lib.ones(2, 3), p=2))
    for fn in ("dropout2d", "dropout3d"):
        for shape in [(2, 3), (2, 3, 4), (2, 3, 4, 5, 6)]:
            messages = []
            for lib in (torch, nbgrad):
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    getattr(lib.nn.functional, fn)(lib.ones(*shape))
                messages.append([str(m.message) for m in w])
            assert messages[0] == messages[1]
