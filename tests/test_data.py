"""nbgrad.utils.data against torch.utils.data: batch order and collation with the same sampler
order, samplers, splits, dataset combinators, and the error texts for bad arguments."""
import warnings
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.utils.data as tud

import nbgrad
import nbgrad.utils.data as nud

Point = namedtuple("Point", ["x", "y"])


def assert_same(ours, theirs, where="batch"):
    """Same structure, container types, tensor dtypes, shapes and values."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, nbgrad.Tensor), where
        assert repr(ours.dtype) == repr(theirs.dtype) and tuple(ours.shape) == tuple(theirs.shape), where
        np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy(), err_msg=where)
    elif isinstance(theirs, (dict, list, tuple)):
        assert type(ours) is type(theirs), f"{where}: {type(ours)} vs {type(theirs)}"
        assert len(ours) == len(theirs), where
        if isinstance(theirs, dict):
            assert list(ours) == list(theirs), where
            for k in theirs:
                assert_same(ours[k], theirs[k], f"{where}[{k!r}]")
        else:
            for i, (a, b) in enumerate(zip(ours, theirs)):
                assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, where


def samples(lib, n=7):
    """One dataset per collation case, built the same way from ``lib`` (torch or nbgrad)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return {
        "tensors": [(lib.tensor(x[i]), lib.tensor(i)) for i in range(n)],
        "numbers": [(float(x[i, 0]), i, bool(i % 2)) for i in range(n)],
        "numpy": [(x[i], x[i].astype(np.float64), np.arange(i, i + 2), x[i] > 0, x[i].reshape(3, 1)[::2].T)
                  for i in range(n)],
        "numpy_mixed": [x[i] if i % 2 else x[i].astype(np.float64) for i in range(n)],
        "numpy_scalars": [(np.float64(x[i, 0]), np.int64(i), np.bool_(i % 2)) for i in range(n)],
        "dicts": [{"img": lib.tensor(x[i]), "label": i, "meta": {"name": f"s{i}", "w": 0.5 * i}} for i in range(n)],
        "ordered": [OrderedDict(b=lib.tensor([i, i]), a=float(i)) for i in range(n)],
        "namedtuple": [Point(lib.tensor(x[i]), i) for i in range(n)],
        "lists": [[lib.tensor(x[i]), [i, float(i)]] for i in range(n)],
        "strings": [("word" * (i + 1), i) for i in range(n)],
        "scalar_tensors": [lib.tensor(float(i), dtype=lib.float64) for i in range(n)],
    }


CASES = list(samples(torch))


@pytest.mark.parametrize("case", CASES)
def test_default_collate_matches_torch(case):
    ours, theirs = samples(nbgrad)[case], samples(torch)[case]
    assert_same(nud.default_collate(ours), tud.default_collate(theirs))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (3, False), (3, True), (7, False), (10, True)])
def test_loader_matches_torch_with_the_same_order(case, batch_size, drop_last):
    order = [4, 0, 6, 2, 1, 5, 3]
    ours = nud.DataLoader(samples(nbgrad)[case], batch_size=batch_size, sampler=order, drop_last=drop_last)
    theirs = tud.DataLoader(samples(torch)[case], batch_size=batch_size, sampler=order, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, want = list(ours), list(theirs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_same(a, b)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), batch_size=st.integers(1, 14), drop_last=st.booleans(), seed=st.integers(0, 99))
def test_any_order_and_batching_matches_torch(n, batch_size, drop_last, seed):
    order = np.random.default_rng(seed).permutation(n).tolist()
    ours = list(nud.DataLoader(samples(nbgrad, n)["dicts"], batch_size, sampler=order, drop_last=drop_last))
    theirs = list(tud.DataLoader(samples(torch, n)["dicts"], batch_size, sampler=order, drop_last=drop_last))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_same(a, b)


def tensor_datasets(lib):
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    return lib.utils.data.TensorDataset(lib.tensor(x), lib.tensor(np.arange(10) % 3), lib.tensor(x[:, 0] > 10))


@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (4, False), (4, True), (10, False), (32, False)])
def test_tensor_dataset_batches(batch_size, drop_last):
    order = [9, 3, 0, 7, 1, 8, 2, 6, 4, 5]
    for sampler in (order, nud.SequentialSampler(range(10))):
        ours = list(nud.DataLoader(tensor_datasets(nbgrad), batch_size, sampler=sampler, drop_last=drop_last))
        theirs = list(tud.DataLoader(tensor_datasets(torch), batch_size, sampler=sampler, drop_last=drop_last))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b)


def test_subsets_of_a_tensor_dataset_match_torch():
    order = [3, 0, 4, 1, 2]
    for lib, mod in ((nbgrad, nud), (torch, tud)):
        inner = mod.Subset(tensor_datasets(lib), [9, 2, 7, 4, 0, 5, 1])
        outer = mod.Subset(inner, (6, 1, 3, 0, 5))
        batches = list(mod.DataLoader(outer, batch_size=2, sampler=order))
        if lib is nbgrad:
            ours = batches
        else:
            theirs = batches
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert_same(a, b)


def test_batch_sampler_and_custom_collate():
    batches = [[0, 1], [5, 2, 9], [3]]
    ours = list(nud.DataLoader(tensor_datasets(nbgrad), batch_sampler=batches))
    theirs = list(tud.DataLoader(tensor_datasets(torch), batch_sampler=batches))
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    loader = nud.DataLoader(list(range(10)), batch_size=4, collate_fn=lambda b: sum(b))
    assert list(loader) == [6, 22, 17]
    loader = nud.BatchSampler(nud.SequentialSampler(range(10)), 3, drop_last=False)
    assert list(loader) == list(tud.BatchSampler(tud.SequentialSampler(range(10)), 3, drop_last=False))


def test_no_auto_batching():
    data = [np.arange(3) + i for i in range(4)]
    ours, theirs = list(nud.DataLoader(data, batch_size=None)), list(tud.DataLoader(data, batch_size=None))
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    assert_same(nud.default_convert({"a": (np.ones(2), 3)}), tud.default_convert({"a": (np.ones(2), 3)}))


class Stream:
    """An iterable dataset of n items, made for either library."""

    def __init__(self, base, n):
        self.base, self.n = base, n

    def make(self):
        n = self.n

        class S(self.base):
            def __iter__(self):
                return iter([(i, float(i) / 2) for i in range(n)])

            def __len__(self):
                return n
        return S()


@pytest.mark.parametrize("batch_size,drop_last", [(None, False), (1, False), (3, False), (3, True), (5, False)])
def test_iterable_dataset(batch_size, drop_last):
    ours = nud.DataLoader(Stream(nud.IterableDataset, 10).make(), batch_size=batch_size, drop_last=drop_last)
    theirs = tud.DataLoader(Stream(tud.IterableDataset, 10).make(), batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, want = list(ours), list(theirs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_same(a, b)
    chained = list(nud.DataLoader(Stream(nud.IterableDataset, 2).make() + Stream(nud.IterableDataset, 3).make(),
                                  batch_size=None))
    assert [c[0] for c in chained] == [0, 1, 0, 1, 2]


# -- shuffling and samplers -----------------------------------------------------------------------
def test_shuffle_is_seedable_and_a_permutation():
    ds = nud.TensorDataset(nbgrad.arange(50))

    def epoch(loader):
        return [int(v) for (b,) in loader for v in b.tolist()]

    g1, g2 = nbgrad.Generator().manual_seed(3), nbgrad.Generator().manual_seed(3)
    a = nud.DataLoader(ds, batch_size=8, shuffle=True, generator=g1)
    b = nud.DataLoader(ds, batch_size=8, shuffle=True, generator=g2)
    e1, e2 = epoch(a), epoch(a)
    assert e1 == epoch(b) and e2 == epoch(b)                  # same seed, same epochs
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50)) and e1 != e2
    assert e1 != list(range(50))
    nbgrad.manual_seed(7)
    first = epoch(nud.DataLoader(ds, batch_size=5, shuffle=True))
    nbgrad.manual_seed(7)
    assert epoch(nud.DataLoader(ds, batch_size=5, shuffle=True)) == first


def test_random_sampler():
    g = nbgrad.Generator().manual_seed(0)
    s = nud.RandomSampler(range(10), num_samples=25, generator=g)
    draws = list(s)
    assert len(s) == 25 and len(draws) == 25
    assert sorted(draws[:10]) == list(range(10)) and sorted(draws[10:20]) == list(range(10))
    r = list(nud.RandomSampler(range(4), replacement=True, num_samples=70, generator=g))
    assert len(r) == 70 and set(r) == {0, 1, 2, 3}
    sub = list(nud.SubsetRandomSampler([10, 20, 30, 40], generator=g))
    assert sorted(sub) == [10, 20, 30, 40]


def test_weighted_random_sampler():
    g = nbgrad.Generator().manual_seed(1)
    draws = list(nud.WeightedRandomSampler([0.0, 1.0, 3.0, 0.0], 200, generator=g))
    assert set(draws) == {1, 2} and draws.count(2) > draws.count(1)
    no_rep = list(nud.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6], 6, replacement=False, generator=g))
    assert sorted(no_rep) == list(range(6))
    extra = list(nud.WeightedRandomSampler([0.0, 1.0, 0.0], 3, replacement=False, generator=g))
    assert extra[0] == 1 and sorted(extra) == [0, 1, 2]       # zero weights only after the rest, as torch


@pytest.mark.parametrize("args", [
    ([0.5, -1.0], 1, True), ([0.0, 0.0], 1, True), ([1.0, 2.0], 3, False), ([float("nan"), 1.0], 1, True)])
def test_weighted_random_sampler_errors_match_torch(args):
    with pytest.raises(RuntimeError) as want:
        list(tud.WeightedRandomSampler(*args))
    with pytest.raises(RuntimeError) as got:
        list(nud.WeightedRandomSampler(*args))
    assert str(got.value) == str(want.value)


# -- datasets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [[3, 7], [0.3, 0.7], [0.33, 0.33, 0.34], [1.0], [10, 0]])
def test_random_split(lengths):
    g = nbgrad.Generator().manual_seed(0)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ours = nud.random_split(range(10), lengths, generator=g)
        theirs = tud.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    items = [x for s in ours for x in s]
    assert sorted(items) == list(range(10))
    again = nud.random_split(range(10), lengths, generator=nbgrad.Generator().manual_seed(0))
    assert [list(s) for s in again] == [list(s) for s in ours]


@pytest.mark.parametrize("lengths", [[3, 3], [0.5, 0.6], [1.5, -0.5], [11]])
def test_random_split_errors_match_torch(lengths):
    with pytest.raises(ValueError) as want:
        tud.random_split(range(10), lengths)
    with pytest.raises(ValueError) as got:
        nud.random_split(range(10), lengths)
    assert str(got.value) == str(want.value)


def test_random_split_warns_for_an_empty_split():
    with pytest.warns(UserWarning, match="Length of split at index 2 is 0"):
        nud.random_split(range(2), [0.5, 0.5, 0.0])


def test_subset_and_concat():
    ds = nud.TensorDataset(nbgrad.arange(10) * 10)
    sub = nud.Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[1][0].item() == 20 and [int(b) for (b,) in nud.DataLoader(sub)] == [70, 20, 50]
    cat = nud.ConcatDataset([range(3), [10, 11], range(100, 104)])
    tcat = tud.ConcatDataset([range(3), [10, 11], range(100, 104)])
    assert len(cat) == 9 and cat.cumulative_sizes == tcat.cumulative_sizes
    assert [cat[i] for i in range(-9, 9)] == [tcat[i] for i in range(-9, 9)]
    with pytest.raises(ValueError, match="absolute value of index should not exceed dataset length"):
        cat[-10]
    plus = nud.Subset(range(5), [0, 1]) + nud.Subset(range(5), [4])
    assert isinstance(plus, nud.ConcatDataset) and list(plus) == [0, 1, 4]
    stack = nud.StackDataset(a=range(3), b=[5, 6, 7])
    assert stack[1] == {"a": 1, "b": 6} and nud.StackDataset(range(2), "xy")[1] == (1, "y")


def test_generic_subscripts():
    class Squares(nud.Dataset[int]):
        def __getitem__(self, i):
            return i * i

        def __len__(self):
            return 4

    class Backwards(nud.Sampler[int]):
        def __iter__(self):
            return iter(range(3, -1, -1))

        def __len__(self):
            return 4
    assert [b.tolist() for b in nud.DataLoader(Squares(), batch_size=3, sampler=Backwards())] == [[9, 4, 1], [0]]


def test_dataset_errors():
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        nud.TensorDataset(nbgrad.zeros(3), nbgrad.zeros(4))
    with pytest.raises(AssertionError, match="datasets should not be an empty iterable"):
        nud.ConcatDataset([])
    with pytest.raises(AssertionError, match="ConcatDataset does not support IterableDataset"):
        nud.ConcatDataset([Stream(nud.IterableDataset, 2).make()])
    with pytest.raises(NotImplementedError, match="Subclasses of Dataset should implement __getitem__."):
        nud.Dataset()[0]


# -- errors, compared with torch's texts ------------------------------------------------------------
BAD_LOADERS = [
    dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2), dict(num_workers=2, prefetch_factor=-1),
    dict(persistent_workers=True), dict(sampler=[0, 1], shuffle=True), dict(batch_sampler=[[0]], batch_size=2),
    dict(batch_sampler=[[0]], drop_last=True), dict(batch_size=None, drop_last=True), dict(batch_size=0),
    dict(batch_size=-2), dict(batch_size=2.0), dict(drop_last=1), dict(multiprocessing_context="spawn"),
]


@pytest.mark.parametrize("kwargs", BAD_LOADERS)
def test_loader_argument_errors_match_torch(kwargs):
    with pytest.raises(Exception) as want:
        tud.DataLoader(list(range(4)), **kwargs)
    with pytest.raises(Exception) as got:
        nud.DataLoader(list(range(4)), **kwargs)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


@pytest.mark.parametrize("kwargs", [dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])])
def test_iterable_dataset_argument_errors_match_torch(kwargs):
    with pytest.raises(ValueError) as want:
        tud.DataLoader(Stream(tud.IterableDataset, 2).make(), **kwargs)
    with pytest.raises(ValueError) as got:
        nud.DataLoader(Stream(nud.IterableDataset, 2).make(), **kwargs)
    assert str(got.value).split(", but got")[0] == str(want.value).split(", but got")[0]


@pytest.mark.parametrize("make", [
    lambda lib: [np.array(["a", "b"]), np.array(["c", "d"])],
    lambda lib: [object(), object()],
    lambda lib: [[1, 2], [3]],
    lambda lib: [np.zeros(3), np.zeros(2)],
    lambda lib: [lib.zeros(2, 3), lib.zeros(3, 2)],
    lambda lib: [{"a": None}, {"a": None}],
])
def test_collate_errors_match_torch(make):
    with pytest.raises(Exception) as want:
        tud.default_collate(make(torch))
    with pytest.raises(Exception) as got:
        nud.default_collate(make(nbgrad))
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_sampler_argument_errors_match_torch():
    for make in (lambda m: m.RandomSampler(range(3), replacement=1),
                 lambda m: m.RandomSampler(range(3), num_samples=0),
                 lambda m: m.RandomSampler([], num_samples=None),
                 lambda m: m.WeightedRandomSampler([1.0], 0),
                 lambda m: m.WeightedRandomSampler([1.0], 1, replacement=None),
                 lambda m: m.WeightedRandomSampler([[1.0]], 1),
                 lambda m: m.BatchSampler(range(3), 0, False)):
        with pytest.raises(Exception) as want:
            make(tud)
        with pytest.raises(Exception) as got:
            make(nud)
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_attributes_are_frozen_after_init():
    loader = nud.DataLoader(list(range(4)), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set after DataLoader is initialized"):
        loader.batch_size = 3
    loader.collate_fn = nud.default_collate                       # other attributes may change


def test_num_workers_runs_in_process():
    loader = nud.DataLoader(tensor_datasets(nbgrad), batch_size=4, num_workers=2, persistent_workers=True)
    assert [b[1].tolist() for b in loader] == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0]]
    assert nud.get_worker_info() is None
