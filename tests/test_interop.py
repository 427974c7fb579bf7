"""DLPack both ways (zero-copy), NumPy's ``__array__`` with ``copy=``, ``__array_ufunc__``."""
import numpy as np
import pytest

import nbgrad

torch = pytest.importorskip("torch")


def test_torch_and_numpy_read_nbgrad_memory_without_copy():
    x = nbgrad.tensor([1.0, 2.0, 3.0])
    t = torch.from_dlpack(x)
    t[0] = 7
    a = np.from_dlpack(x)
    a[1] = 8
    assert x.tolist() == [7.0, 8.0, 3.0]
    assert t.data_ptr() == x.data_ptr() == a.ctypes.data
    assert x.__dlpack_device__() == (1, 0)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "bool", "float16"])
def test_dlpack_round_trip_keeps_dtype(dtype):
    t = torch.tensor([1, 0, 1], dtype=getattr(torch, dtype))
    x = nbgrad.from_dlpack(t)
    assert str(x.dtype) == str(t.dtype)
    assert x.data_ptr() == t.data_ptr()
    back = torch.from_dlpack(x)
    assert back.dtype == t.dtype and back.tolist() == t.tolist()


def test_from_dlpack_shares_and_copies_on_request():
    t = torch.arange(4.0).reshape(2, 2).t()        # strided
    x = nbgrad.from_dlpack(t)
    assert x.tolist() == t.tolist() and x.stride() == t.stride()
    t[0, 1] = 9
    assert x[0, 1].item() == 9
    y = nbgrad.from_dlpack(np.arange(3.0), copy=True)
    assert y.tolist() == [0.0, 1.0, 2.0]
    capsule = torch.arange(3).__dlpack__()
    assert nbgrad.from_dlpack(capsule).tolist() == [0, 1, 2]


def test_export_of_a_tensor_requiring_grad_is_refused_as_in_torch():
    with pytest.raises(BufferError) as theirs:
        torch.ones(2, requires_grad=True).__dlpack__()
    with pytest.raises(BufferError, match=str(theirs.value)):
        torch.from_dlpack(nbgrad.ones(2, requires_grad=True))
    assert torch.from_dlpack(nbgrad.ones(2, requires_grad=True).detach()).tolist() == [1.0, 1.0]


def test_array_protocol_copy_keyword():
    x = nbgrad.tensor([1.0, 2.0])
    assert np.shares_memory(np.asarray(x), x.numpy())
    assert not np.shares_memory(np.array(x, copy=True), x.numpy())
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="Unable to avoid copy"):
        np.asarray(x, dtype=np.float64, copy=False)
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        np.asarray(nbgrad.ones(2, requires_grad=True))


def test_elementwise_ufuncs_give_tensors_and_record():
    w = nbgrad.tensor([0.5, 1.5], requires_grad=True)
    y = np.subtract(np.sin(w) * np.float64(2) + np.exp(w), np.ones(2))
    assert isinstance(y, nbgrad.Tensor)
    y.sum().backward()
    wv = np.array([0.5, 1.5], np.float32)
    np.testing.assert_allclose(w.grad.numpy(), 2 * np.cos(wv) + np.exp(wv), rtol=1e-6)
    assert isinstance(np.maximum(w, 1.0), nbgrad.Tensor)
    assert np.greater(w, 1.0).tolist() == [False, True]


def test_other_ufunc_uses_give_arrays():
    x = nbgrad.tensor([1.0, 2.0, 3.0])
    r = np.add.reduce(x)
    assert not isinstance(r, nbgrad.Tensor) and r == 6.0
    out = np.empty(3, np.float32)
    np.multiply(x, 2, out=out)
    assert out.tolist() == [2.0, 4.0, 6.0]
    with pytest.raises(TypeError, match="out= may not be a Tensor"):
        np.multiply(x, 2, out=(x,))


def test_tolist_and_item_of_every_dtype():
    for name in ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"):
        t = torch.tensor([[1, 0], [3, 1]], dtype=getattr(torch, name))
        x = nbgrad.tensor([[1, 0], [3, 1]], dtype=getattr(nbgrad, name))
        assert x.tolist() == t.tolist()
        assert x[1, 0].item() == t[1, 0].item() and type(x[1, 0].item()) is type(t[1, 0].item())
