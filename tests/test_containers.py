"""ModuleDict, ParameterList, ParameterDict and Unflatten against PyTorch: the same operations
on both give the same keys, order, registered parameters and state-dict names, repr, and
error texts."""
from collections import OrderedDict

import numpy as np
import pytest

import nbgrad
import nbgrad.nn as nn
from helpers import same_error


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def state_names(m):
    return list(m.state_dict())


def test_module_dict_matches_torch(torch):
    def build(lib):
        d = lib.nn.ModuleDict({"b": lib.nn.Linear(2, 3), "a": lib.nn.ReLU()})
        d["c"] = lib.nn.Linear(3, 1)
        d.update([("d", lib.nn.Tanh()), ("b", lib.nn.Linear(2, 2))])
        d.update(OrderedDict(e=lib.nn.Identity()))
        popped = d.pop("a")
        return d, popped
    (dn, pn), (dt, pt) = build(nbgrad), build(torch)
    assert list(dn) == list(dt) == list(dn.keys()) and len(dn) == len(dt)
    assert type(pn).__name__ == type(pt).__name__ == "ReLU"
    assert state_names(dn) == state_names(dt) and repr(dn) == repr(dt)
    assert "c" in dn and "a" not in dn
    assert [type(v).__name__ for v in dn.values()] == [type(v).__name__ for v in dt.values()]
    dn.clear()
    assert len(dn) == 0 and list(dn.parameters()) == []
    same_error(torch, lambda lib: lib.nn.ModuleDict(5))
    same_error(torch, lambda lib: lib.nn.ModuleDict([5]))
    same_error(torch, lambda lib: lib.nn.ModuleDict([("a", lib.nn.ReLU(), 1)]))


def test_parameter_list_matches_torch(torch):
    def build(lib):
        p = lib.nn.ParameterList([lib.ones(2, 3), lib.nn.Parameter(lib.zeros(4))])
        p.append(lib.ones(1))
        p.extend([lib.ones(5, dtype=lib.float64)])
        p += [lib.zeros(2, 2)]
        p.append("not a tensor")
        return p
    pn, pt = build(nbgrad), build(torch)
    assert len(pn) == len(pt) == 6 and repr(pn) == repr(pt) and state_names(pn) == state_names(pt)
    assert all(isinstance(x, nn.Parameter) for x in list(pn)[:5]) and pn[-1] == "not a tensor"
    assert [tuple(x.shape) for x in pn.parameters()] == [tuple(x.shape) for x in pt.parameters()]
    assert len(pn[1:4]) == 3 and isinstance(pn[1:4], nn.ParameterList)
    pn[0] = nbgrad.ones(7)
    assert pn[0].shape == (7,) and isinstance(pn[0], nn.Parameter)
    assert "0" not in dir(pn)
    same_error(torch, lambda lib: lib.nn.ParameterList([lib.ones(1)])[3])
    same_error(torch, lambda lib: lib.nn.ParameterList().extend(lib.ones(3)))
    same_error(torch, lambda lib: lib.nn.ParameterList()(1))
    # gradients reach the entries
    x = nbgrad.ones(3, requires_grad=False)
    loss = (pn[1].sum() + (pn[2] * x[0]).sum())
    loss.backward()
    assert pn[1].grad.tolist() == [1.0] * 4


def test_parameter_dict_matches_torch(torch):
    def build(lib):
        d = lib.nn.ParameterDict({"w": lib.ones(2, 3), "b": lib.zeros(3)})        # a plain dict: sorted
        d["z"] = lib.nn.Parameter(lib.ones(1))
        d.update([("y", lib.ones(2)), ("a", lib.ones(4, dtype=lib.float64))])
        d.setdefault("s", lib.zeros(1))
        d["other"] = "x"
        return d
    dn, dt = build(nbgrad), build(torch)
    assert list(dn) == list(dt) and repr(dn) == repr(dt) and state_names(dn) == state_names(dt)
    assert dn.get("missing", 3) == 3 and "w" in dn and dn["other"] == "x"
    assert list(reversed(dn)) == list(reversed(dt))
    assert dn.pop("other") == dt.pop("other") == "x" and dn.popitem()[0] == dt.popitem()[0] == "s"
    merged = dn | nn.ParameterDict(OrderedDict(q=nbgrad.ones(1)))
    assert list(merged) == list(dn) + ["q"]
    fresh = dn.fromkeys(["k1", "k2"], nbgrad.ones(1))
    assert list(fresh) == ["k1", "k2"]
    dn.clear()
    assert len(dn) == 0 and list(dn.parameters()) == []
    same_error(torch, lambda lib: lib.nn.ParameterDict(3))
    same_error(torch, lambda lib: lib.nn.ParameterDict([("a",)]))
    same_error(torch, lambda lib: lib.nn.ParameterDict()[1])
    same_error(torch, lambda lib: lib.nn.ParameterDict()(1))


def test_unflatten_matches_torch(torch):
    for dim, size in [(1, (2, 3)), (-1, (3, -1)), (0, [4])]:
        x = np.arange(24.0).reshape(4, 6)
        yn = nn.Unflatten(dim, size)(nbgrad.tensor(x))
        yt = torch.nn.Unflatten(dim, size)(torch.tensor(x))
        assert yn.shape == yt.shape and np.array_equal(yn.numpy(), yt.numpy())
        assert repr(nn.Unflatten(dim, size)) == repr(torch.nn.Unflatten(dim, size))
    seq = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (2, 12)))
    assert seq(nbgrad.ones(3, 4, 6)).shape == (3, 2, 12)
    same_error(torch, lambda lib: lib.nn.Unflatten(1, 5))
    same_error(torch, lambda lib: lib.nn.Unflatten(1, (2, 2.5)))
