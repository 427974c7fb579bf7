"""The integer and half-precision dtypes: promotion against ``torch.result_type`` over all
pairs, arithmetic against PyTorch, conversions, legacy type objects and ``Tensor.type``."""
import itertools

import numpy as np
import pytest

import nbgrad

torch = pytest.importorskip("torch")

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
SAMPLE = {"bool": [True, False], "uint8": [3, 250], "int8": [-3, 100], "int16": [-300, 7], "int32": [70000, -5],
          "int64": [2 ** 40, -9], "float16": [1.5, -2.25], "float32": [0.1, -3.5], "float64": [1e-3, 2.5]}


def pair(name, values=None, zero_d=False):
    values = SAMPLE[name] if values is None else values
    if zero_d:
        values = values[0]
    return nbgrad.tensor(values, dtype=getattr(nbgrad, name)), torch.tensor(values, dtype=getattr(torch, name))


@pytest.mark.parametrize("a,b", list(itertools.product(NAMES, NAMES)))
def test_promotion_matches_result_type(a, b):
    for za, zb in ((False, False), (False, True), (True, False), (True, True)):
        (na, ta), (nb, tb) = pair(a, zero_d=za), pair(b, zero_d=zb)
        assert str(nbgrad.result_type(na, nb)) == str(torch.result_type(ta, tb)), (za, zb)
    assert str(nbgrad.promote_types(getattr(nbgrad, a), getattr(nbgrad, b))) == \
        str(torch.promote_types(getattr(torch, a), getattr(torch, b)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("number", [True, 3, -2.5])
def test_promotion_with_numbers(name, number):
    n, t = pair(name)
    assert str(nbgrad.result_type(n, number)) == str(torch.result_type(t, number))


@pytest.mark.parametrize("a,b", list(itertools.product(NAMES[1:], NAMES[1:])))
def test_arithmetic_matches_torch(a, b):
    (na, ta), (nb, tb) = pair(a), pair(b)
    for op in (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - y, lambda x, y: x / y,
               lambda x, y: x > y, lambda x, y: nbgrad.maximum(x, y) if isinstance(x, nbgrad.Tensor)
               else torch.maximum(x, y)):
        ours, theirs = op(na, nb), op(ta, tb)
        assert str(ours.dtype) == str(theirs.dtype)
        rtol = 2e-3 if "float16" in (a, b) else 1e-6
        np.testing.assert_allclose(ours.numpy().astype(np.float64), theirs.numpy().astype(np.float64), rtol=rtol)


@pytest.mark.parametrize("name", ["uint8", "int8", "int16", "int32"])
def test_integer_wraparound_and_reductions(name):
    n, t = pair(name)
    for op in (lambda x: x * 3 + 7, lambda x: x.sum(), lambda x: -x if name != "uint8" else x + 200):
        ours, theirs = op(n), op(t)
        assert str(ours.dtype) == str(theirs.dtype)
        assert ours.tolist() == theirs.tolist()


def test_float16_computes_in_float32_and_stores_half():
    values = np.random.default_rng(0).uniform(-2, 2, 50)
    x, t = nbgrad.tensor(values, dtype=nbgrad.float16, requires_grad=True), \
        torch.tensor(values, dtype=torch.float16, requires_grad=True)
    for lib, v in ((nbgrad, x), (torch, t)):
        y = (v.sin() * v + v.exp() / 3).sum() + (v.reshape(5, 10) @ v.reshape(10, 5)).mean()
        y.backward()
    assert y.dtype == torch.float16
    assert x.grad.dtype is nbgrad.float16
    np.testing.assert_allclose(float(x.detach().sin().sum()), float(t.detach().sin().sum()), rtol=2e-3)
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), t.grad.numpy().astype(np.float64), rtol=1e-2,
                               atol=1e-2)
    assert x.half().element_size() == 2


def test_conversion_methods():
    x = nbgrad.tensor([1.7, -2.2, 3.0])
    t = torch.tensor([1.7, -2.2, 3.0])
    for name in ("int", "half", "short", "byte", "char", "long", "float", "double", "bool"):
        ours, theirs = getattr(x, name)(), getattr(t, name)()
        assert str(ours.dtype) == str(theirs.dtype), name
        assert ours.tolist() == theirs.tolist() or name == "half"


def test_unsupported_dtypes_raise():
    with pytest.raises(TypeError, match="nbgrad has no dtype uint16"):
        nbgrad.zeros(2, dtype=np.uint16)
    with pytest.raises(TypeError, match="nbgrad has no dtype complex64"):
        nbgrad.ones(2).to(np.complex64)
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with pytest.raises(TypeError, match="needs the ml_dtypes package"):
            nbgrad.ones(2, dtype=nbgrad.bfloat16)


def test_numpy_arrays_keep_their_integer_dtype():
    for np_dtype, name in ((np.int32, "int32"), (np.uint8, "uint8"), (np.int8, "int8"), (np.float16, "float16")):
        a = np.arange(3).astype(np_dtype)
        assert str(nbgrad.from_numpy(a).dtype) == str(torch.from_numpy(a).dtype) == f"torch.{name}"
        assert str(nbgrad.tensor(a).dtype) == f"torch.{name}"


def test_legacy_types():
    x = nbgrad.FloatTensor([1, 2])
    assert x.dtype is nbgrad.float32 and isinstance(x, nbgrad.FloatTensor) and not isinstance(x, nbgrad.LongTensor)
    assert nbgrad.LongTensor(2, 3).shape == (2, 3) and nbgrad.LongTensor(2, 3).dtype is nbgrad.int64
    assert isinstance(nbgrad.tensor([True]), nbgrad.BoolTensor)
    assert isinstance(nbgrad.tensor([1], dtype=nbgrad.int32), nbgrad.IntTensor)
    assert isinstance(nbgrad.ones(1, dtype=nbgrad.float64), nbgrad.DoubleTensor)
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor", "ByteTensor", "HalfTensor"):
        assert getattr(nbgrad, name)([1]).type() == getattr(torch, name)([1]).type() == f"torch.{name}"


def test_type_with_a_name():
    x = nbgrad.tensor([1.5, 2.5])
    assert x.type() == "torch.FloatTensor"
    assert x.type("torch.DoubleTensor").dtype is nbgrad.float64
    assert x.type("nbgrad.IntTensor").dtype is nbgrad.int32
    assert x.type(nbgrad.LongTensor).tolist() == [1, 2]
    assert x.type(nbgrad.float16).dtype is nbgrad.float16
    with pytest.raises(ValueError, match="invalid type: 'torch.NopeTensor'"):
        x.type("torch.NopeTensor")


def test_tolist_and_item_for_every_dtype():
    for name in NAMES:
        n, t = pair(name)
        assert n.tolist() == t.tolist(), name
        assert n[0].item() == t[0].item(), name
        assert type(n[0].item()) is type(t[0].item()), name


@pytest.mark.parametrize("name", NAMES)
def test_finfo_iinfo(name):
    ours, theirs = getattr(nbgrad, name), getattr(torch, name)
    kind = "finfo" if theirs.is_floating_point else "iinfo" if name != "bool" else None
    if kind is None:
        return
    a, b = getattr(nbgrad, kind)(ours), getattr(torch, kind)(theirs)
    assert repr(a) == repr(b)
    for attr in ("bits", "max", "min") + (("eps", "tiny", "smallest_normal", "resolution") if kind == "finfo" else ()):
        assert getattr(a, attr) == getattr(b, attr), attr
    other = "iinfo" if kind == "finfo" else "finfo"
    with pytest.raises(TypeError) as info:
        getattr(torch, other)(theirs)
    with pytest.raises(TypeError, match=str(info.value).replace("(", r"\(").replace(")", r"\)")):
        getattr(nbgrad, other)(ours)
