"""F.embedding and nn.Embedding against PyTorch: values and table gradients (repeated indices
accumulate, padding_idx gets none, scale_grad_by_freq), max_norm's in-place renormalisation,
float64 gradcheck and gradgradcheck of the gather/scatter kernels, the large (parallel)
scatter, and PyTorch's error texts."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
import nbgrad.nn as nn
import nbgrad.nn.functional as F
from helpers import assert_close, nb, random_array, same_error, to_torch
from nbgrad.autograd import gradcheck, gradgradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@given(rows=st.integers(1, 7), dim=st.integers(1, 5), idx_shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
       padding=st.sampled_from([None, 0, -1, 2]), scale=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 99))
def test_embedding_matches_torch(torch, rows, dim, idx_shape, padding, scale, dtype, seed):
    if padding is not None and not -rows <= padding < rows:
        padding = None
    rng = np.random.default_rng(seed)
    w = random_array((rows, dim), dtype, seed)
    idx = rng.integers(0, rows, idx_shape)
    wn, wt = nb(w, requires_grad=True), to_torch(w, requires_grad=True)
    y = F.embedding(nbgrad.tensor(idx), wn, padding_idx=padding, scale_grad_by_freq=scale)
    yt = torch.nn.functional.embedding(torch.tensor(idx), wt, padding_idx=padding, scale_grad_by_freq=scale)
    assert_close(y, yt)
    assert type(y.grad_fn).__name__ == "EmbeddingBackward0"
    g = random_array(yt.shape, dtype, seed + 1)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    assert_close(wn.grad, wt.grad)


def test_repeated_indices_accumulate_and_padding_gets_none():
    w = nbgrad.ones(4, 2, requires_grad=True)
    F.embedding(nbgrad.tensor([[1, 1, 3], [1, 0, 3]]), w, padding_idx=3).sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0], [3.0, 3.0], [0.0, 0.0], [0.0, 0.0]]


def test_gradcheck_and_gradgradcheck():
    w = nb(random_array((6, 3), np.float64, 0), requires_grad=True)
    idx = nbgrad.tensor([[1, 2, 1], [5, 1, 0]])
    assert gradcheck(lambda w: F.embedding(idx, w), (w,))
    assert gradcheck(lambda w: F.embedding(idx, w, padding_idx=4), (w,))      # padding row not looked up
    assert gradgradcheck(lambda w: F.embedding(idx, w).square(), (w,))
    # padding and frequency scaling change the gradient on purpose; its own derivative
    # (the gather that is the scatter's adjoint) must still be exact
    for padding in (None, 1):
        for scale in (False, True):
            assert gradgradcheck(lambda w: F.embedding(idx, w, padding_idx=padding, scale_grad_by_freq=scale), (w,))


@pytest.mark.parametrize("scale", [False, True])
def test_double_backward_matches_torch(torch, scale):
    """With ``scale_grad_by_freq``, PyTorch's double backward (``embedding_dense_double_backward``)
    leaves out the division by the counts, so it is not the derivative of its own backward;
    nbgrad's is (gradgradcheck above), and differs from PyTorch's by exactly those counts."""
    w = random_array((5, 3), np.float64, 3)
    idx = np.array([[1, 2], [1, 1], [4, 2]])
    results = []
    for lib, wrap in ((nbgrad, nb), (torch, to_torch)):
        wl = wrap(w, requires_grad=True)
        y = lib.nn.functional.embedding(lib.tensor(idx), wl, padding_idx=2, scale_grad_by_freq=scale)
        (g,) = lib.autograd.grad((y * y).sum(), wl, create_graph=True)
        (gg,) = lib.autograd.grad((g * g).sum(), wl)
        results.append((g, gg))
    assert_close(results[0][0], results[1][0])
    counts = np.bincount(idx.reshape(-1), minlength=5)[:, None] if scale else 1
    assert_close(results[0][1].numpy() * counts, results[1][1])


def test_large_scatter_runs_in_parallel_and_matches_torch(torch):
    """Big enough for the column-band parallel kernel; many repeats of few rows."""
    rng = np.random.default_rng(1)
    w = random_array((50, 300), np.float64, 1)
    idx = rng.integers(0, 50, (40, 30))
    g = random_array((40, 30, 300), np.float64, 2)
    wn, wt = nb(w, requires_grad=True), to_torch(w, requires_grad=True)
    F.embedding(nbgrad.tensor(idx), wn, padding_idx=7).backward(nb(g))
    torch.nn.functional.embedding(torch.tensor(idx), wt, padding_idx=7).backward(to_torch(g))
    assert_close(wn.grad, wt.grad)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_max_norm_renormalises_looked_up_rows_in_place(torch, norm_type):
    w = random_array((6, 4), np.float64, 5) * 3
    idx = np.array([0, 2, 2, 5])
    mn, mt = nn.Embedding(6, 4, max_norm=1.5, norm_type=norm_type), torch.nn.Embedding(6, 4, max_norm=1.5,
                                                                                        norm_type=norm_type)
    with nbgrad.no_grad():
        mn.weight.copy_(nb(w))
    with torch.no_grad():
        mt.weight.copy_(to_torch(w))
    y, yt = mn(nbgrad.tensor(idx)), mt(torch.tensor(idx))
    assert_close(y, yt)
    assert_close(mn.weight, mt.weight)          # rows 0, 2, 5 clipped, the others untouched
    y.sum().backward()
    yt.sum().backward()
    assert_close(mn.weight.grad, mt.weight.grad)


def test_module_init_repr_and_from_pretrained(torch):
    m = nn.Embedding(10, 3, padding_idx=-2)
    assert m.padding_idx == 8 and m.weight.shape == (10, 3)
    assert m.weight[8].tolist() == [0.0, 0.0, 0.0]
    assert abs(float(nn.Embedding(1000, 20).weight.std()) - 1.0) < 0.05      # N(0, 1)
    for kw in ({}, dict(padding_idx=1), dict(max_norm=2.0, norm_type=1.0, scale_grad_by_freq=True)):
        assert repr(nn.Embedding(5, 2, **kw)) == repr(torch.nn.Embedding(5, 2, **kw))
    table = nbgrad.tensor([[1.0, 2.0], [3.0, 4.0]])
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad and frozen(nbgrad.tensor([1])).tolist() == [[3.0, 4.0]]
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    assert list(dict(nn.Embedding(3, 2).named_parameters())) == ["weight"]


def test_errors(torch):
    same_error(torch, lambda lib: lib.nn.functional.embedding(lib.tensor([5]), lib.ones(5, 3)))
    same_error(torch, lambda lib: lib.nn.functional.embedding(lib.tensor([[0, -1]]), lib.ones(5, 3)))
    same_error(torch, lambda lib: lib.nn.functional.embedding(lib.tensor([1.0]), lib.ones(5, 3)))
    same_error(torch, lambda lib: lib.nn.functional.embedding(lib.tensor([1]), lib.ones(5)))
    same_error(torch, lambda lib: lib.nn.functional.embedding(lib.tensor([1]), lib.ones(5, 3), padding_idx=5))
    same_error(torch, lambda lib: lib.nn.Embedding(5, 3, padding_idx=-6))
    same_error(torch, lambda lib: lib.nn.Embedding.from_pretrained(lib.ones(5)))
    same_error(torch, lambda lib: lib.nn.Embedding(5, 3, max_norm=1.0)(lib.tensor([7])))


def test_bad_index_in_backward_is_caught():
    """An index changed (through ``.data``) after the forward is checked again by the scatter."""
    w = nbgrad.ones(3, 2, requires_grad=True)
    idx = nbgrad.tensor([0, 1])
    y = F.embedding(idx, w)
    idx.data[1] = 9
    with pytest.raises(IndexError, match="index out of range in self"):
        y.sum().backward()


def test_strided_table_and_empty_indices(torch):
    """A transposed view as the table (read in place by the gather), and no indices at all."""
    b = random_array((3, 5), np.float32, 4)
    bn, bt = nb(b, requires_grad=True), to_torch(b, requires_grad=True)
    idx = [[0, 4, 4], [1, 2, 3]]
    y = F.embedding(nbgrad.tensor(idx), bn.t())
    yt = torch.nn.functional.embedding(torch.tensor(idx), bt.t())
    assert_close(y, yt)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    assert_close(bn.grad, bt.grad)
    empty = F.embedding(nbgrad.zeros(0, dtype=nbgrad.int64), bn.t())
    assert empty.shape == (0, 3)
    empty.sum().backward()
