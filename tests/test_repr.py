"""Tensors print exactly as PyTorch prints the same values (users compare the text)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nbgrad
from nbgrad._formatting import get_printoptions, set_printoptions


def both(arr):
    torch = pytest.importorskip("torch")
    arr = np.asarray(arr)
    return nbgrad.from_numpy(arr.copy()), torch.from_numpy(arr.copy())


def assert_same_repr(arr):
    n, t = both(arr)
    assert repr(n) == repr(t)
    assert str(n) == str(t)


CASES = {
    "scalar float": np.float32(14.0),
    "scalar fraction": np.float32(3.25),
    "scalar int": np.int64(3),
    "scalar bool": np.bool_(True),
    "scalar float64": np.float64(2.5),
    "scalar nan": np.float32(math.nan),
    "vector ints as floats": np.array([1., 2.], np.float32),
    "matrix mixed signs": np.array([[0.1234, -1.2345], [2.0, 3.0]], np.float32),
    "sci large": np.array([1e10, 1.0], np.float32),
    "sci small": np.array([1e-5, 1.0]),
    "sci ratio": np.array([0.5, 1000.5], np.float32),
    "big integers in float": np.array([123456789.0, 1.0]),
    "tiny and huge": np.array([1e300, 1e-300]),
    "bool": np.array([True, False]),
    "bool matrix": np.array([[True], [False]]),
    "int range": np.arange(10),
    "negative ints": np.array([-100, 5, 0]),
    "nan inf": np.array([math.nan, math.inf, -math.inf, 1.0]),
    "nan with fractions": np.array([math.nan, 1.5, -2.25], np.float32),
    "only nonfinite": np.array([math.nan, math.inf], np.float32),
    "zeros": np.zeros(4, np.float32),
    "negative zero": np.array([-0.0, 0.0]),
    "wide line wraps": np.linspace(-3, 3, 100).astype(np.float32),
    "3-d": np.arange(60, dtype=np.float32).reshape(3, 4, 5) / 7,
    "4-d": np.arange(16, dtype=np.float64).reshape(2, 2, 2, 2) - 8,
    "summarized vector": np.arange(2000, dtype=np.float32) / 3,
    "summarized matrix": np.arange(2000).reshape(20, 100),
    "summarized 3-d": np.arange(8000, dtype=np.float32).reshape(20, 20, 20) * 1e-3,
    "summarized sci": np.geomspace(1e-6, 1e6, 1500),
    "one row summarized": np.arange(1001, dtype=np.float32).reshape(1, 1001),
    "empty vector": np.zeros((0,), np.float32),
    "empty int": np.zeros((0,), np.int64),
    "empty matrix": np.zeros((0, 3), np.float32),
    "empty float64": np.zeros((2, 0)),
    "empty bool": np.zeros((0, 1), np.bool_),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    assert_same_repr(CASES[name])


def test_random_values_match_torch():
    rng = np.random.default_rng(0)
    for shape in [(5,), (3, 4), (2, 3, 4), (7, 7), (40, 30)]:
        for dtype in (np.float32, np.float64):
            assert_same_repr(rng.standard_normal(shape).astype(dtype))
            assert_same_repr((rng.standard_normal(shape) * 1e5).astype(dtype))
        assert_same_repr(rng.integers(-10**6, 10**6, shape))


def test_non_contiguous_layouts():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    assert_same_repr(a.T)
    assert_same_repr(a[:, ::2])


values = st.one_of(st.floats(-1e3, 1e3, width=32), st.floats(width=32),
                   st.sampled_from([0.0, -0.0, 1.0, 1e-5, 1e9, math.nan, math.inf]))


@given(st.lists(st.integers(1, 4), max_size=3), st.data(), st.sampled_from([np.float32, np.float64]))
def test_hypothesis_floats_match_torch(shape, data, dtype):
    n = int(np.prod(shape))
    arr = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), dtype).reshape(shape)
    assert_same_repr(arr)


def test_autograd_suffixes():
    torch = pytest.importorskip("torch")
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == repr(tx) == "tensor([1., 2.], requires_grad=True)"
    assert repr(x * 3) == repr(tx * 3) == "tensor([3., 6.], grad_fn=<MulBackward0>)"
    assert repr(nbgrad.tensor(2.0, requires_grad=True)) == "tensor(2., requires_grad=True)"
    assert repr(x.detach()) == "tensor([1., 2.])"


def test_suffixes_wrap_at_line_width():
    torch = pytest.importorskip("torch")
    a = np.linspace(-1, 1, 10)
    x = nbgrad.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    assert repr(x) == repr(tx)
    assert "\n" in repr(x * 2)
    assert repr(x * 2) == repr(tx * 2)


def test_dtype_suffix_follows_default_dtype():
    assert repr(nbgrad.tensor([1.5], dtype=nbgrad.float64)) == "tensor([1.5000], dtype=torch.float64)"
    assert repr(nbgrad.tensor([3])) == "tensor([3])"
    torch = pytest.importorskip("torch")
    nbgrad.set_default_dtype(nbgrad.float64)
    torch.set_default_dtype(torch.float64)
    try:
        for arr in (np.array([1.5]), np.array([1.5], np.float32), np.zeros((0,)), np.zeros((0,), np.float32)):
            assert_same_repr(arr)
    finally:
        nbgrad.set_default_dtype(nbgrad.float32)
        torch.set_default_dtype(torch.float32)


def test_print_options_match_torch():
    torch = pytest.importorskip("torch")
    arr = np.arange(30, dtype=np.float32) / 7
    saved = get_printoptions()
    try:
        for kwargs in (dict(precision=2), dict(threshold=5), dict(edgeitems=1, threshold=5), dict(sci_mode=True),
                       dict(linewidth=30), dict(profile="short")):
            set_printoptions(**kwargs)
            torch.set_printoptions(**kwargs)
            assert_same_repr(arr)
            assert_same_repr(arr.reshape(5, 6))
    finally:
        set_printoptions(profile="default")
        torch.set_printoptions(profile="default")
    assert get_printoptions() == saved


def test_str_is_repr_and_format():
    x = nbgrad.tensor([[1.0, 2.5]])
    assert str(x) == repr(x) == "tensor([[1.0000, 2.5000]])"
    assert f"{x}" == repr(x)
    assert f"{nbgrad.tensor(2.5):.1f}" == "2.5"
