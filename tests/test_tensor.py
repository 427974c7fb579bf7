"""The Tensor itself: factories, attributes, conversions, dtype casts, and the memory
sharing rules (``from_numpy``, ``numpy()``, ``detach``, ``.data``)."""
import numpy as np
import pytest

import nbgrad
from helpers import assert_close, noncontiguous


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# -- factories -------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, dtype, shape", [
    ([1, 2, 3], nbgrad.int64, (3,)),
    ([1.0, 2, 3], nbgrad.float32, (3,)),
    ([[True, False]], nbgrad.bool, (1, 2)),
    (3.5, nbgrad.float32, ()),
    (7, nbgrad.int64, ()),
    (True, nbgrad.bool, ()),
    ([[1, 2], [3, 4]], nbgrad.int64, (2, 2)),
    ([], nbgrad.float32, (0,)),
    (np.array([1.5, 2.5]), nbgrad.float64, (2,)),
    (np.array([1, 2], dtype=np.int64), nbgrad.int64, (2,)),
    (np.array([1.5], dtype=np.float32), nbgrad.float32, (1,)),
    (np.float64(1.5), nbgrad.float64, ()),           # a NumPy scalar keeps its dtype
    ([np.float64(1.5)], nbgrad.float64, (1,)),
    (np.float32(1.5), nbgrad.float32, ()),
])
def test_tensor_infers_dtype_like_torch(torch, data, dtype, shape):
    t = nbgrad.tensor(data)
    assert t.dtype is dtype and t.shape == shape
    expected = torch.tensor(data)
    assert str(expected.dtype) == f"torch.{dtype.name}"
    assert t.tolist() == expected.tolist()


def test_tensor_copies_and_takes_options():
    a = np.array([1.0, 2.0])
    t = nbgrad.tensor(a)
    a[0] = 9
    assert t.tolist() == [1.0, 2.0]
    t = nbgrad.tensor([1, 2], dtype=nbgrad.float64, requires_grad=True)
    assert t.dtype is nbgrad.float64 and t.requires_grad and t.is_leaf and t.grad is None
    assert nbgrad.tensor([1.7, -1.7], dtype=nbgrad.int64).tolist() == [1, -1]
    assert nbgrad.tensor(nbgrad.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert nbgrad.tensor([nbgrad.tensor(1.0), nbgrad.tensor(2.0)]).tolist() == [1.0, 2.0]


def test_tensor_rejects_ragged_and_non_numeric():
    with pytest.raises((ValueError, TypeError)):
        nbgrad.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        nbgrad.tensor("abc")
    with pytest.raises(TypeError):
        nbgrad.tensor([object()])


def test_from_numpy_shares_memory_both_ways():
    a = np.zeros((2, 3))
    t = nbgrad.from_numpy(a)
    assert t.dtype is nbgrad.float64 and t.shape == (2, 3)
    a[0, 1] = 5.0
    assert t.tolist()[0][1] == 5.0                  # array -> tensor
    t.add_(1.0)
    assert a[1, 2] == 1.0 and a[0, 1] == 6.0        # tensor -> array
    t.numpy()[1, 0] = -3.0
    assert a[1, 0] == -3.0
    assert np.shares_memory(t.numpy(), a)


def test_from_numpy_keeps_layout_and_dtypes():
    a = noncontiguous(np.arange(12.0).reshape(3, 4))
    t = nbgrad.from_numpy(a)
    assert not t.is_contiguous() and t.tolist() == a.tolist()
    assert np.shares_memory(t.numpy(), a)
    for np_dtype, dtype in [(np.float32, nbgrad.float32), (np.float64, nbgrad.float64), (np.int64, nbgrad.int64),
                            (np.bool_, nbgrad.bool)]:
        assert nbgrad.from_numpy(np.zeros(2, np_dtype)).dtype is dtype
    with pytest.raises(TypeError):
        nbgrad.from_numpy(np.zeros(2, dtype=object))
    with pytest.raises(TypeError, match="expected np.ndarray"):
        nbgrad.from_numpy([1, 2])
    with pytest.raises(ValueError, match="At least one stride in the given numpy array is negative"):
        nbgrad.from_numpy(np.arange(3.0)[::-1])


def test_as_tensor_shares_when_it_can():
    a = np.arange(3.0)
    t = nbgrad.as_tensor(a)
    a[0] = 7
    assert t.tolist()[0] == 7.0
    t2 = nbgrad.as_tensor(t)
    assert t2 is t
    assert nbgrad.as_tensor(t, dtype=nbgrad.float32).dtype is nbgrad.float32
    c = nbgrad.as_tensor(a, dtype=nbgrad.float32)       # another dtype: a copy
    a[1] = 9
    assert c.dtype is nbgrad.float32 and c.tolist()[1] == 1.0
    assert nbgrad.as_tensor([1, 2]).dtype is nbgrad.int64
    assert nbgrad.as_tensor([1.0, 2.0], dtype=nbgrad.float64).dtype is nbgrad.float64


@pytest.mark.parametrize("name, value", [("zeros", 0), ("ones", 1)])
def test_zeros_ones(name, value):
    f = getattr(nbgrad, name)
    for t in (f(2, 3), f((2, 3)), f([2, 3]), f(nbgrad.Size([2, 3]))):
        assert t.shape == (2, 3) and t.dtype is nbgrad.float32 and t.is_leaf and not t.requires_grad
        assert t.tolist() == [[value] * 3] * 2
    assert f(()).shape == () and f(()).item() == value
    assert f(2, dtype=nbgrad.int64).tolist() == [value, value]
    assert f(2, dtype=nbgrad.bool).dtype is nbgrad.bool
    assert f(2, requires_grad=True).requires_grad
    assert f(0, 3).shape == (0, 3)


def test_full_empty(torch):
    assert nbgrad.full((2, 2), 3).dtype is nbgrad.int64                 # as torch
    assert nbgrad.full((2,), 2.5).dtype is nbgrad.float32
    assert nbgrad.full((2,), True).dtype is nbgrad.bool
    assert nbgrad.full((2, 1), 7.0, dtype=nbgrad.float64).tolist() == [[7.0], [7.0]]
    assert nbgrad.full([3], -1.5, requires_grad=True).requires_grad
    e = nbgrad.empty(2, 3)
    assert e.shape == (2, 3) and e.dtype is nbgrad.float32
    assert nbgrad.empty((4,), dtype=nbgrad.int64).dtype is nbgrad.int64
    for f in (nbgrad.zeros, nbgrad.ones, nbgrad.empty):
        with pytest.raises(RuntimeError):
            f(-1)
    with pytest.raises(TypeError):
        nbgrad.zeros(2.5)


def test_arange_linspace_eye(torch):
    cases = [(lambda lib: lib.arange(5)), (lambda lib: lib.arange(2, 7)), (lambda lib: lib.arange(0, 1, 0.25)),
             (lambda lib: lib.arange(10, 0, -3)), (lambda lib: lib.arange(1, 2.5, 0.5)),
             (lambda lib: lib.arange(5, dtype=lib.float64)), (lambda lib: lib.arange(0)),
             (lambda lib: lib.linspace(0, 1, 5)), (lambda lib: lib.linspace(-1, 1, 3, dtype=lib.float64)),
             (lambda lib: lib.linspace(2, 2, 1)), (lambda lib: lib.linspace(0, 1, 0)),
             (lambda lib: lib.eye(3)), (lambda lib: lib.eye(2, 3)), (lambda lib: lib.eye(3, dtype=lib.float64))]
    for case in cases:
        got, expected = case(nbgrad), case(torch)
        assert got.dtype.name == str(expected.dtype).replace("torch.", "")
        assert_close(got, expected)
    with pytest.raises(RuntimeError):
        nbgrad.arange(0, 5, 0)


def test_random_factories():
    nbgrad.manual_seed(0)
    r = nbgrad.rand(100, 100)
    assert r.shape == (100, 100) and r.dtype is nbgrad.float32
    a = r.numpy()
    assert a.min() >= 0 and a.max() < 1 and abs(a.mean() - 0.5) < 0.02
    n = nbgrad.randn(100, 100, dtype=nbgrad.float64).numpy()
    assert n.dtype == np.float64 and abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    i = nbgrad.randint(3, 7, (1000,))
    assert i.dtype is nbgrad.int64 and set(np.unique(i.numpy())) == {3, 4, 5, 6}
    assert set(np.unique(nbgrad.randint(2, (100,)).numpy())) == {0, 1}
    assert nbgrad.randn(5, 5).shape == nbgrad.randn((5, 5)).shape == (5, 5)
    assert nbgrad.rand((2, 3)).shape == (2, 3)
    assert nbgrad.randn(3, requires_grad=True).requires_grad
    assert nbgrad.randn(()).shape == ()


def test_manual_seed_reproducibility():
    def draw():
        return (nbgrad.randn(4, 3).tolist(), nbgrad.rand(5).tolist(), nbgrad.randint(0, 100, (6,)).tolist(),
                nbgrad.randn_like(nbgrad.zeros(2, dtype=nbgrad.float64)).tolist())
    nbgrad.manual_seed(1234)
    first = draw()
    nbgrad.manual_seed(1234)
    assert draw() == first
    nbgrad.manual_seed(4321)
    assert draw() != first
    assert nbgrad.initial_seed() == 4321
    g = nbgrad.Generator().manual_seed(7)
    x = nbgrad.randn(3, generator=g).tolist()
    assert nbgrad.randn(3, generator=nbgrad.Generator().manual_seed(7)).tolist() == x


def test_like_factories():
    base = nbgrad.ones(2, 3, dtype=nbgrad.float64, requires_grad=True)
    sevens = lambda t, **k: nbgrad.full_like(t, 7, **k)      # noqa: E731
    for f, value in [(nbgrad.zeros_like, 0.0), (nbgrad.ones_like, 1.0), (sevens, 7.0)]:
        t = f(base)
        assert t.shape == (2, 3) and t.dtype is nbgrad.float64 and not t.requires_grad
        assert t.tolist() == [[value] * 3] * 2
        assert f(base, dtype=nbgrad.float32).dtype is nbgrad.float32
        assert f(base, requires_grad=True).requires_grad
    for f in (nbgrad.empty_like, nbgrad.rand_like, nbgrad.randn_like):
        t = f(base)
        assert t.shape == (2, 3) and t.dtype is nbgrad.float64
    ints = nbgrad.randint_like(nbgrad.zeros(4, dtype=nbgrad.int64), 0, 5)
    assert ints.dtype is nbgrad.int64 and ints.shape == (4,)
    assert nbgrad.zeros_like(nbgrad.tensor([1, 2])).dtype is nbgrad.int64


# -- the legacy constructor -----------------------------------------------------------------------
def test_legacy_constructor():
    t = nbgrad.Tensor(2, 3)
    assert t.shape == (2, 3) and t.dtype is nbgrad.float32
    t = nbgrad.Tensor([1, 2])
    assert t.dtype is nbgrad.float32 and t.tolist() == [1.0, 2.0]
    t = nbgrad.Tensor(6.7)                          # 0-d holding 6.7 (PyTorch refuses this)
    assert t.shape == () and t.dim() == 0 and t.item() == pytest.approx(6.7)
    assert nbgrad.Tensor().shape == (0,)
    assert nbgrad.Tensor((2, 2)).shape == (2, 2)
    assert nbgrad.Tensor(nbgrad.Size([3])).shape == (3,)
    assert nbgrad.Tensor([[1, 2], [3, 4]]).shape == (2, 2)
    assert isinstance(nbgrad.ones(1), nbgrad.Tensor)


# -- attributes -----------------------------------------------------------------------------------
def test_shape_and_size():
    t = nbgrad.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, nbgrad.Size) and isinstance(t.shape, tuple)
    assert repr(t.shape) == "torch.Size([2, 3, 4])"
    assert t.size() == (2, 3, 4) and t.size(0) == 2 and t.size(-1) == 4 and t.size(1) == 3
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-3, 2\], but got 3\)"):
        t.size(3)
    assert t.ndim == 3 and t.dim() == 3 and t.numel() == 24 and t.shape.numel() == 24
    assert nbgrad.tensor(5.0).dim() == 0 and nbgrad.tensor(5.0).numel() == 1
    assert len(t) == 2


def test_dtype_and_device():
    t = nbgrad.ones(2)
    assert t.dtype is nbgrad.float32 and t.dtype == nbgrad.float and nbgrad.float64 is nbgrad.double
    assert nbgrad.long is nbgrad.int64
    assert t.device == nbgrad.device("cpu") and t.device == "cpu" and str(t.device) == "cpu"
    assert t.is_floating_point() and not nbgrad.tensor([1]).is_floating_point()
    assert not t.is_cuda


def test_item_and_tolist():
    assert nbgrad.tensor(3.5).item() == 3.5 and isinstance(nbgrad.tensor(3.5).item(), float)
    assert nbgrad.tensor([[7]]).item() == 7 and isinstance(nbgrad.tensor([[7]]).item(), int)
    assert nbgrad.tensor(True).item() is True
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to Scalar"):
        nbgrad.ones(2).item()
    assert nbgrad.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert nbgrad.tensor(2.0).tolist() == 2.0
    assert isinstance(nbgrad.tensor([1.0]).tolist()[0], float)


def test_numpy_shares_memory():
    t = nbgrad.zeros(3)
    a = t.numpy()
    a[1] = 4.0
    assert t.tolist() == [0.0, 4.0, 0.0]
    assert isinstance(a, np.ndarray) and a.dtype == np.float32


def test_numpy_refuses_tensor_that_requires_grad():
    t = nbgrad.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad\. "
                                           r"Use tensor\.detach\(\)\.numpy\(\) instead\."):
        t.numpy()
    with pytest.raises(RuntimeError, match="Can't call numpy"):
        (t * 2).numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0]


def test_array_protocol():
    t = nbgrad.tensor([1.0, 2.0])
    a = np.asarray(t)
    assert a.dtype == np.float32 and a.tolist() == [1.0, 2.0]
    a[0] = 5.0                                      # np.asarray shares, as with torch
    assert t.tolist()[0] == 5.0
    assert np.array(t, dtype=np.float64).dtype == np.float64
    b = np.array(t)                                 # np.array copies
    b[1] = 9.0
    assert t.tolist()[1] == 2.0
    assert np.add(t.detach().numpy(), 1).tolist() == [6.0, 3.0]


def test_len():
    assert len(nbgrad.zeros(4, 2)) == 4
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(nbgrad.tensor(1.0))


def test_bool_float_int_of_one_element():
    assert bool(nbgrad.tensor([1.0])) is True and bool(nbgrad.tensor(0.0)) is False
    assert float(nbgrad.tensor([[2.5]])) == 2.5 and int(nbgrad.tensor([2.7])) == 2
    assert int(nbgrad.tensor(3)) == 3
    if nbgrad.tensor([3.0]):
        pass
    else:
        pytest.fail("a one-element tensor of 3 is true")


def test_bool_float_errors_match_torch():
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(nbgrad.ones(2))
    with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
        float(nbgrad.ones(2))
    with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
        int(nbgrad.ones(2))
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with no values is ambiguous"):
        bool(nbgrad.ones(0))


# -- casts ------------------------------------------------------------------------------------------
def test_casts(torch):
    x = nbgrad.tensor([1.5, -2.5, 0.0])
    assert x.double().dtype is nbgrad.float64 and x.double().tolist() == [1.5, -2.5, 0.0]
    assert x.long().dtype is nbgrad.int64 and x.long().tolist() == torch.tensor([1.5, -2.5, 0.0]).long().tolist()
    assert x.bool().tolist() == [True, True, False]
    assert nbgrad.tensor([1, 2]).float().dtype is nbgrad.float32
    assert x.to(nbgrad.float64).dtype is nbgrad.float64
    assert x.to(dtype=nbgrad.int64).dtype is nbgrad.int64
    assert x.to("cpu") is x and x.to(nbgrad.float32) is x and x.float() is x
    assert x.to(nbgrad.ones(1, dtype=nbgrad.float64)).dtype is nbgrad.float64
    assert x.to("cpu", nbgrad.float64).dtype is nbgrad.float64
    assert x.type() == "torch.FloatTensor" and x.double().type() == "torch.DoubleTensor"
    y = x.double()
    y.add_(1)
    assert x.tolist() == [1.5, -2.5, 0.0]            # a cast is a copy
    big = noncontiguous(np.arange(6.0).reshape(2, 3))
    assert nbgrad.from_numpy(big).float().tolist() == big.tolist()


def test_cast_is_differentiable():
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.grad_fn is not None and y.grad_fn.name() == "ToCopyBackward0"
    (y * y).backward(nbgrad.ones(2, dtype=nbgrad.float64))
    assert x.grad.dtype is nbgrad.float32 and x.grad.tolist() == [2.0, 4.0]
    assert not x.long().requires_grad


# -- requires_grad, detach, .data ---------------------------------------------------------------------
def test_requires_grad_only_for_floats():
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        nbgrad.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype can require gradients"):
        nbgrad.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype can require gradients"):
        nbgrad.zeros(2, dtype=nbgrad.int64, requires_grad=True)
    t = nbgrad.tensor([True])
    with pytest.raises(RuntimeError):
        t.requires_grad = True
    assert not t.requires_grad


def test_requires_grad_flag():
    x = nbgrad.ones(2)
    assert not x.requires_grad
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    y = x * 2
    assert y.requires_grad and not y.is_leaf
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        y.requires_grad = False


def test_detach_shares_memory_and_version():
    x = nbgrad.ones(3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.numpy(), y.detach().numpy())
    before = y._version
    d.add_(1)
    assert y._version == before + 1 == d._version
    assert y.detach().tolist() == [3.0, 3.0, 3.0]
    dx = x.detach()
    dx.mul_(5)
    assert x.detach().tolist() == [5.0, 5.0, 5.0] and x._version == 1


def test_data_shares_memory_not_history_or_version():
    x = nbgrad.ones(3, requires_grad=True)
    d = x.data
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    d.add_(1)                                       # allowed: .data is outside autograd
    assert x.detach().tolist() == [2.0, 2.0, 2.0]
    assert x._version == 0                          # as in torch, .data has a counter of its own
    y = (x * 2).data
    assert not y.requires_grad and y.tolist() == [4.0, 4.0, 4.0]
    x.data = nbgrad.zeros(3)
    assert x.requires_grad and x.detach().tolist() == [0.0, 0.0, 0.0]
