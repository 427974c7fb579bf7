"""nbgrad.save / nbgrad.load: round trips, the safetensors layout, bad files, atomic saves."""
import io
import json
import math
import os
import pickle
from collections import Counter, OrderedDict

import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nbgrad
from nbgrad import nn


def roundtrip(obj, **kw):
    buf = io.BytesIO()
    nbgrad.save(obj, buf)
    buf.seek(0)
    return nbgrad.load(buf, **kw)


def same(a, b):
    assert isinstance(b, nbgrad.Tensor) and isinstance(a, nn.Parameter) == isinstance(b, nn.Parameter)
    assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


@pytest.mark.parametrize("make", [
    lambda: nbgrad.tensor(3.5, dtype=nbgrad.float64),            # 0-d
    lambda: nbgrad.tensor(7),                                     # 0-d int64
    lambda: nbgrad.zeros(0),                                      # size 0
    lambda: nbgrad.zeros(2, 0, 3, dtype=nbgrad.int64),
    lambda: nbgrad.arange(12).reshape(3, 4),
    lambda: nbgrad.tensor([True, False, True]),
    lambda: nbgrad.randn(4, 5),
    lambda: nbgrad.randn(4, 5, dtype=nbgrad.float64),
    lambda: nbgrad.randn(4, 5).t(),                               # non-contiguous
    lambda: nbgrad.randn(6, 5)[::2, 1:4],                         # strided view
    lambda: nbgrad.randn(3, requires_grad=True),
    lambda: nbgrad.tensor([float("nan"), float("inf"), -0.0, 1e-45]),
])
def test_tensor_round_trip(make):
    t = make()
    same(t, roundtrip(t))


def test_structure_round_trip():
    obj = {"a": [1, 2.5, -3, True, None, "text", (4, (5.0, "x"))], 7: OrderedDict(z=1, a=2), (1, 2): "tuple key",
           "floats": [float("nan"), float("inf"), -float("inf"), 0.1], "dtype": nbgrad.float64,
           "size": nbgrad.Size([2, 3]), "device": nbgrad.device("cpu"), "big": 2 ** 70, "empty": {}, "nil": [],
           "counter": Counter([3, 7, 7, 15])}
    got = roundtrip(obj)
    assert list(got) == list(obj)
    assert got["a"] == obj["a"] and type(got["a"][6]) is tuple and type(got["a"][6][1]) is tuple
    assert type(got[7]) is OrderedDict and list(got[7].items()) == [("z", 1), ("a", 2)]
    assert got[(1, 2)] == "tuple key"
    assert math.isnan(got["floats"][0]) and got["floats"][1:] == obj["floats"][1:]
    assert got["dtype"] is nbgrad.float64 and got["size"] == (2, 3) and isinstance(got["size"], nbgrad.Size)
    assert got["device"] == nbgrad.device("cpu") and got["big"] == 2 ** 70 and type(got["a"][1]) is float
    assert got["empty"] == {} and got["nil"] == []
    assert type(got["counter"]) is Counter and got["counter"] == Counter({3: 1, 7: 2, 15: 1})


def test_shared_storage_views_stay_shared():
    a = nbgrad.arange(20.).reshape(4, 5)
    obj = {"a": a, "row": a[1], "t": a.t(), "again": a, "col": a[:, 2]}
    got = roundtrip(obj)
    assert got["again"] is got["a"]
    for k in obj:
        same(obj[k], got[k])
    got["a"][1, 2] = -1.0
    assert got["row"][2].item() == -1.0 and got["t"][2, 1].item() == -1.0 and got["col"][1].item() == -1.0
    assert got["row"]._version == got["a"]._version          # one storage, one version counter


def test_overlapping_views_without_an_owner():
    a = nbgrad.arange(10.)
    obj = [a[0:6], a[4:10], a[::3]]
    got = roundtrip(obj)
    for x, y in zip(obj, got):
        same(x, y)
    got[0][5] = 100.0
    assert got[1][1].item() == 100.0
    got[1][2] = -5.0                                            # a[6], also a[::3][2]
    assert got[2][2].item() == -5.0


def test_colliding_and_reserved_names():
    a, b, c, d = (nbgrad.full((2,), float(i)) for i in range(4))
    obj = {"a.b": a, "a": {"b": b}, "__metadata__": c, "__storage_0__": d, "": [a]}
    buf = io.BytesIO()
    nbgrad.save(obj, buf)
    got = nbgrad.load(io.BytesIO(buf.getvalue()))
    for k in ("a.b", "__metadata__", "__storage_0__"):
        same(obj[k], got[k])
    same(b, got["a"]["b"])
    assert got[""][0] is got["a.b"]
    names = safetensors_numpy.load(buf.getvalue())
    assert len(names) == 4 and "a.b" in names


def test_parameters_and_requires_grad():
    p = nn.Parameter(nbgrad.randn(3))
    frozen = nn.Parameter(nbgrad.randn(2), requires_grad=False)
    y = p * 2                                                   # a non-leaf: loads as a leaf that requires grad
    got = roundtrip([p, frozen, y])
    assert isinstance(got[0], nn.Parameter) and got[0].requires_grad
    assert isinstance(got[1], nn.Parameter) and not got[1].requires_grad
    assert got[2].requires_grad and got[2].is_leaf and got[2].grad_fn is None
    np.testing.assert_array_equal(got[2].detach().numpy(), y.detach().numpy())


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
       dtype=st.sampled_from(["float32", "float64", "int64", "bool"]),
       view=st.sampled_from(["none", "t", "step", "slice"]))
def test_round_trip_property(shape, dtype, view):
    rng = np.random.default_rng(len(shape))
    data = rng.normal(size=shape) * 10
    t = nbgrad.tensor(data).to(getattr(nbgrad, dtype))
    if view == "t" and t.dim() >= 2:
        t = t.transpose(0, 1)
    elif view == "step" and t.dim() >= 1:
        t = t[::2]
    elif view == "slice" and t.dim() >= 1:
        t = t[1:]
    obj = {"x": t, "base": t}
    got = roundtrip(obj)
    same(t, got["x"])
    assert got["base"] is got["x"]


def test_file_is_safetensors(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    path = tmp_path / "model.safetensors"
    nbgrad.save(model.state_dict(), path)
    loaded = safetensors_numpy.load_file(str(path))
    sd = model.state_dict()
    assert sorted(loaded) == sorted(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(loaded[k], v.numpy())
        assert loaded[k].dtype == np.float32


def test_reads_foreign_safetensors(tmp_path):
    path = str(tmp_path / "other.safetensors")
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([1, 2], dtype=np.int32),
              "m": np.array([True, False]), "h": np.ones(3, np.float16), "s": np.array(2.0)}
    safetensors_numpy.save_file(arrays, path)
    got = nbgrad.load(path)
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k].numpy(), v)
    assert got["i"].dtype == nbgrad.int32 and got["h"].dtype == nbgrad.float16 and got["m"].dtype == nbgrad.bool


def test_module_state_dict_round_trip(tmp_path):
    nbgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    path = tmp_path / "m.pt"
    nbgrad.save(model.state_dict(), path)
    sd = nbgrad.load(path)
    assert type(sd) is OrderedDict and list(sd) == list(model.state_dict())
    fresh = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    fresh.load_state_dict(sd)
    x = nbgrad.randn(3, 5)
    np.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())


@pytest.mark.parametrize("make", [
    lambda ps: nbgrad.optim.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: nbgrad.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
])
def test_optimizer_state_dict_round_trip(make, tmp_path):
    def build():
        nbgrad.manual_seed(1)
        m = nn.Linear(4, 3)
        return m, make(m.parameters())

    def steps(m, opt, n):
        for i in range(n):
            opt.zero_grad()
            m(nbgrad.ones(2, 4) * (i + 1)).pow(2).sum().backward()
            opt.step()

    m1, o1 = build()
    steps(m1, o1, 3)
    nbgrad.save({"model": m1.state_dict(), "opt": o1.state_dict(), "epoch": 3}, tmp_path / "ckpt")
    ck = nbgrad.load(tmp_path / "ckpt")
    assert ck["epoch"] == 3 and ck["opt"]["param_groups"] == o1.state_dict()["param_groups"]
    assert list(ck["opt"]["state"]) == [0, 1]                   # int keys stay ints
    m2, o2 = build()
    m2.load_state_dict(ck["model"])
    o2.load_state_dict(ck["opt"])
    steps(m1, o1, 2)
    steps(m2, o2, 2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_map_location():
    t = {"w": nbgrad.randn(2)}
    for loc in ("cpu", nbgrad.device("cpu"), {"cpu": "cpu"}):
        same(t["w"], roundtrip(t, map_location=loc)["w"])
    assert roundtrip(t, map_location=lambda x, where: x * 0 + 1)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="only the CPU"):
        roundtrip(t, map_location="cuda:0")


# -- bad files -----------------------------------------------------------------------------------
def write(tmp_path, data, name="bad.pt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def good_bytes():
    buf = io.BytesIO()
    nbgrad.save({"w": nbgrad.arange(100.), "n": 3}, buf)
    return buf.getvalue()


def reason(error, path):
    """The message after the file's name (which must be in it)."""
    text = str(error.value)
    assert str(path) in text
    return text.split(str(path), 1)[1]


@pytest.mark.parametrize("cut", [0, 5, 8, 9, 30, -1, -200])
def test_truncated(tmp_path, cut):
    data = good_bytes()
    path = write(tmp_path, data[:cut])
    with pytest.raises(RuntimeError) as e:
        nbgrad.load(path)
    assert "truncated" in reason(e, path)


def test_corrupted_data_byte(tmp_path):
    data = bytearray(good_bytes())
    data[-10] ^= 0x40
    path = write(tmp_path, bytes(data))
    with pytest.raises(RuntimeError) as e:
        nbgrad.load(path)
    assert "tensor 'w' is corrupted (CRC32" in reason(e, path)


def test_corrupted_header(tmp_path):
    data = bytearray(good_bytes())
    data[12] = ord("\\")                              # inside the JSON header
    with pytest.raises(RuntimeError, match="header is corrupted"):
        nbgrad.load(write(tmp_path, bytes(data)))
    n = int.from_bytes(data[:8], "little")
    data = bytearray(good_bytes())
    header = bytes(data[8:8 + n]).replace(b'"data_offsets":[0,400]', b'"data_offsets":[0,500]')
    assert header != bytes(data[8:8 + n])
    with pytest.raises(RuntimeError, match="should take 400 bytes"):
        nbgrad.load(write(tmp_path, data[:8] + header + data[8 + n:]))


@pytest.mark.parametrize("kind", ["pickle", "torch_zip", "torch_legacy", "random", "text"])
def test_foreign_files(tmp_path, kind):
    path = tmp_path / "foreign.bin"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
        match = "pickle file"
    elif kind == "torch_zip":
        torch.save({"w": torch.ones(2)}, path)
        match = "zip archive"
    elif kind == "torch_legacy":
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
        match = "pickle file"
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(300))
        match = "not a safetensors file"
    else:
        path.write_text("hello, this is a text file and nothing else")
        match = "not a safetensors file"
    with pytest.raises(RuntimeError) as e:
        nbgrad.load(path)
    assert match in reason(e, path)


def test_deeply_nested_header_is_an_error(tmp_path):
    meta = json.dumps({"version": 1, "object": "[" * 100000 + "]" * 100000, "tensors": {}, "crc32": {}})
    meta = meta.replace('"' + "[" * 100000, "[" * 100000).replace("]" * 100000 + '"', "]" * 100000)
    header = json.dumps({"__metadata__": {"format": "pt", "nbgrad": meta}}).encode()
    path = write(tmp_path, len(header).to_bytes(8, "little") + header)
    with pytest.raises(RuntimeError, match="nbgrad metadata is corrupted|nested too deeply"):
        nbgrad.load(path)


def test_weights_only_false_is_refused():
    with pytest.raises(ValueError, match="only weights_only=True"):
        roundtrip({"a": 1}, weights_only=False)


def test_unsupported_object_is_refused(tmp_path):
    class Thing:
        pass
    path = tmp_path / "x.pt"
    with pytest.raises(TypeError, match=r"cannot store an object of type .*Thing \(at a.1\)"):
        nbgrad.save({"a": [1, Thing()]}, path)
    assert not path.exists() and os.listdir(tmp_path) == []


# -- atomic save -----------------------------------------------------------------------------------
def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    nbgrad.save({"w": nbgrad.ones(3)}, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        nbgrad.save({"w": nbgrad.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]                  # the temporary file is gone
    monkeypatch.undo()
    nbgrad.save({"w": nbgrad.zeros(4)}, str(path))
    assert nbgrad.load(str(path))["w"].tolist() == [0.0] * 4
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_save_keeps_the_file_mode(tmp_path):
    path = tmp_path / "ckpt.pt"
    nbgrad.save([1], path)
    os.chmod(path, 0o640)
    nbgrad.save([2], path)
    assert os.stat(path).st_mode & 0o777 == 0o640 and nbgrad.load(path) == [2]


def test_save_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real.pt"
    nbgrad.save([1], target)
    link = tmp_path / "latest.pt"
    link.symlink_to(target)
    nbgrad.save([2], link)
    assert link.is_symlink() and nbgrad.load(target) == [2]


def test_missing_parent_directory(tmp_path):
    with pytest.raises(RuntimeError, match="Parent directory .* does not exist"):
        nbgrad.save([1], tmp_path / "nope" / "x.pt")


@pytest.mark.parametrize("dtype", ["float16", "int32", "int16", "int8", "uint8"])
def test_the_narrow_dtypes_round_trip(dtype):
    t = nbgrad.tensor([[1, 2], [3, 4]], dtype=getattr(nbgrad, dtype))
    buf = io.BytesIO()
    nbgrad.save({"t": t}, buf)
    buf.seek(0)
    got = nbgrad.load(buf)["t"]
    assert got.dtype == t.dtype
    np.testing.assert_array_equal(got.numpy(), t.numpy())
