"""Random index streams drawn from an ``nbgrad.Generator`` (the default one when None), so that
``nbgrad.manual_seed`` or a seeded generator makes shuffling reproducible."""
from ...factories import default_generator


def _rng(generator):
    return (generator or default_generator)._rng


def randperm(n, generator=None):
    """A random permutation of ``range(n)`` as a list of ints."""
    return _rng(generator).permutation(n).tolist()


def randint(high, size, generator=None):
    return _rng(generator).integers(0, high, size).tolist()


def choice(n, size, p, replace, generator=None):
    return _rng(generator).choice(n, size, replace=replace, p=p).tolist()
