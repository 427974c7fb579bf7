"""The activation modules of issue 11 against PyTorch's: the same constructor signature
(names and defaults), the same repr for default and non-default settings, the same values and
gradients with non-default settings (float64), and the same construction errors.
(Random shapes, layouts and float32 are covered by test_nn.py's activation tests.)"""
import inspect
import warnings

import numpy as np
import pytest

import nbgrad.nn as nn
from helpers import assert_close, nb, random_array, to_torch

NAMES = ["GELU", "SiLU", "LeakyReLU", "ELU", "Softplus", "Hardtanh", "Mish", "SELU", "CELU", "ReLU6", "Hardsigmoid",
         "Hardswish", "LogSigmoid", "Softsign", "Tanhshrink"]

SETTINGS = {"GELU": dict(approximate="tanh"), "SiLU": dict(inplace=True), "LeakyReLU": dict(negative_slope=0.3),
            "ELU": dict(alpha=0.7), "Softplus": dict(beta=0.5, threshold=2.0),
            "Hardtanh": dict(min_val=-2.0, max_val=0.5), "Mish": dict(inplace=True), "SELU": dict(inplace=True),
            "CELU": dict(alpha=1.5), "ReLU6": dict(inplace=True), "Hardsigmoid": dict(inplace=True),
            "Hardswish": dict(inplace=True), "LogSigmoid": {}, "Softsign": {}, "Tanhshrink": {}}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def signature(cls):
    return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()]


@pytest.mark.parametrize("name", NAMES)
def test_signature_and_repr(torch, name):
    assert signature(getattr(nn, name)) == signature(getattr(torch.nn, name))
    assert repr(getattr(nn, name)()) == repr(getattr(torch.nn, name)())
    assert repr(getattr(nn, name)(**SETTINGS[name])) == repr(getattr(torch.nn, name)(**SETTINGS[name]))


@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_with_settings(torch, name):
    """Non-default settings; an in-place module acts on a non-leaf copy, as a layer does."""
    x = random_array((4, 5), np.float64, 3) * 3
    xn, xt = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    y = getattr(nn, name)(**SETTINGS[name])(xn * 1)
    yt = getattr(torch.nn, name)(**SETTINGS[name])(xt * 1)
    assert_close(y, yt, rtol=1e-6 if name == "Hardsigmoid" else None)
    g = random_array((4, 5), np.float64, 4)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    assert_close(xn.grad, xt.grad, rtol=1e-6 if name == "Hardsigmoid" else None)


def test_hardtanh_deprecated_keywords_and_bad_range(torch):
    for lib in (nn, torch.nn):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m = lib.Hardtanh(min_value=-3.0, max_value=2.0)
        assert (m.min_val, m.max_val) == (-3.0, 2.0)
        assert [str(x.message) for x in w] == ["keyword argument `min_value` is deprecated and renamed to `min_val`",
                                               "keyword argument `max_value` is deprecated and renamed to `max_val`"]
        with pytest.raises(AssertionError):
            lib.Hardtanh(1.0, 1.0)
