"""Samplers: iterables of dataset keys (or of lists of keys, for ``BatchSampler``)."""
import itertools
import types

import numpy as np

from . import _random

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler"]


class Sampler:
    """Subclasses define ``__iter__`` (and ``__len__`` where the length is known)."""
    __class_getitem__ = classmethod(types.GenericAlias)      # ``Sampler[int]``

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value}")


class RandomSampler(Sampler):
    """A fresh permutation each pass (repeated when ``num_samples`` exceeds the length), or
    ``num_samples`` keys drawn with replacement. Draws come from ``generator`` (default: the
    global one), so they are not PyTorch's numbers but are reproducible with a seed."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={self.replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, m = len(self.data_source), self.num_samples
        if self.replacement:
            for _ in range(m // 32):
                yield from _random.randint(n, 32, self.generator)
            yield from _random.randint(n, m % 32, self.generator)
        else:
            for _ in range(m // n):
                yield from _random.randperm(n, self.generator)
            yield from _random.randperm(n, self.generator)[:m % n]

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a fresh random order each pass."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        for i in _random.randperm(len(self.indices), self.generator):
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` keys from ``range(len(weights))`` with probabilities proportional to
    ``weights``, with or without replacement."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        _positive_int("num_samples", num_samples)
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got replacement={replacement}")
        weights = np.asarray(weights.detach().numpy() if hasattr(weights, "detach") else weights, np.float64)
        if weights.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape {tuple(weights.shape)}")
        self.weights, self.num_samples, self.replacement, self.generator = weights, num_samples, replacement, generator

    def __iter__(self):
        w, m = self.weights, self.num_samples
        if not self.replacement and m > w.size:            # torch.multinomial's checks and texts
            raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        if w.sum() <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if self.replacement or m <= np.count_nonzero(w):
            yield from _random.choice(w.size, m, w / w.sum(), self.replacement, self.generator)
            return
        # as torch.multinomial: once the weighted keys are used up, the zero-weight ones follow
        nonzero, zero = np.flatnonzero(w), np.flatnonzero(w == 0)
        order = _random.choice(nonzero.size, nonzero.size, w[nonzero] / w.sum(), False, self.generator)
        yield from nonzero[order].tolist()
        yield from zero[_random.randperm(zero.size, self.generator)][:m - nonzero.size].tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of ``batch_size`` keys from ``sampler``; the last one shorter unless ``drop_last``."""

    def __init__(self, sampler, batch_size, drop_last):
        _positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
