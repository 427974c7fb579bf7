"""``DataLoader``: batches from a dataset through a sampler and a collate function.

Loading runs in the calling process: ``num_workers > 0`` is accepted (and checked as PyTorch
checks it) but batches are still produced in-process, one after another; no worker processes
are started, ``worker_init_fn`` is never called and ``get_worker_info()`` is always None.
``pin_memory`` has no effect (CPU only)."""
import math
import warnings

from .collate import default_collate, default_convert
from .dataset import IterableDataset, Subset, TensorDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler

__all__ = ["DataLoader", "get_worker_info"]


def get_worker_info():
    """None: nbgrad loads data in the main process only."""
    return None


class _InfiniteConstantSampler:
    """The keys an iterable dataset is "indexed" with: None, forever."""

    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Iterate over ``dataset`` in batches (see the module note on ``num_workers``)."""
    _initialized = False

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError("multiprocessing_context can only be used with multi-process loading (num_workers > 0), "
                             f"but got num_workers={num_workers}")

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in {False, None}:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and "
                                 "drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            else:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.prefetch_factor, self.pin_memory = num_workers, prefetch_factor, pin_memory
        self.pin_memory_device, self.timeout, self.worker_init_fn = pin_memory_device, timeout, worker_init_fn
        self.multiprocessing_context, self.persistent_workers, self.in_order = (multiprocessing_context,
                                                                               persistent_workers, in_order)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._IterableDataset_len_called = None
        self._initialized = True

    def __setattr__(self, attr, val):
        if self._initialized and attr in ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
                                          "persistent_workers"):
            raise ValueError(f"{attr} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(attr, val)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self):
        return _iterate_iterable(self) if self._iterable else _iterate_map(self)

    def __len__(self):
        if self._iterable:
            length = self._IterableDataset_len_called = len(self.dataset)
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)


def _iterate_map(loader):
    dataset, collate_fn = loader.dataset, loader.collate_fn
    if not loader._auto_collation:
        for index in loader.sampler:
            yield collate_fn(dataset[index])
        return
    source = _gather_source(dataset) if collate_fn is default_collate and \
        type(loader.batch_sampler) is BatchSampler else None
    getitems = getattr(dataset, "__getitems__", None)
    for indices in loader.batch_sampler:
        if source is not None:     # what stacking the samples gives, in one gather per tensor
            tensors, maps = source
            for keys in maps:
                indices = [keys[i] for i in indices]
            yield [t[indices] for t in tensors]
        elif callable(getitems):
            yield collate_fn(getitems(indices))
        else:
            yield collate_fn([dataset[i] for i in indices])


def _gather_source(dataset):
    """(tensors, key maps) when ``dataset`` is a TensorDataset seen through Subsets with plain
    index sequences (as ``random_split`` makes), so that a batch can be gathered at once."""
    maps = []
    while type(dataset) is Subset and isinstance(dataset.indices, (list, tuple, range)):
        maps.append(dataset.indices)
        dataset = dataset.dataset
    return (dataset.tensors, maps) if type(dataset) is TensorDataset else None


def _iterate_iterable(loader):
    it, n = iter(loader.dataset), 0
    sampler = iter(loader._index_sampler)
    while True:
        index = next(sampler)
        if loader._auto_collation:
            data = []
            for _ in index:
                try:
                    data.append(next(it))
                except StopIteration:
                    break
            if not data or (loader.drop_last and len(data) < len(index)):
                return
            batch = loader.collate_fn(data)
            ended = len(data) < len(index)
        else:
            try:
                batch = loader.collate_fn(next(it))
            except StopIteration:
                return
            ended = False
        n += 1
        if loader._IterableDataset_len_called is not None and n > loader._IterableDataset_len_called:
            warnings.warn(f"Length of IterableDataset {loader.dataset} was reported to be "
                          f"{loader._IterableDataset_len_called}(when accessing len(dataloader)), but {n} samples "
                          "have been fetched. ", stacklevel=2)
        yield batch
        if ended:
            return
