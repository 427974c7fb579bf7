"""The default device and the CPU thread pool: ``set_default_device``, ``set_num_threads``...

nbgrad's parallel loops run on Numba's thread pool, whose size is fixed when Numba starts
(``NUMBA_NUM_THREADS``, the core count by default): ``set_num_threads`` chooses how many of
its threads the calling thread's parallel loops use, at most the pool's size."""
import numbers

import numba

from .functional.device import get_default_device, set_default_device  # noqa: F401  (exported here)

__all__ = ["set_default_device", "get_default_device", "set_num_threads", "get_num_threads",
           "get_num_interop_threads", "set_num_interop_threads", "use_deterministic_algorithms",
           "are_deterministic_algorithms_enabled"]

_interop = [None]
_deterministic = [False]


def _positive(n, name):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise RuntimeError(f"{name} expects an int, but got {type(n).__name__}")
    if n <= 0:
        raise RuntimeError(f"{name} expects a positive integer")
    return int(n)


def set_num_threads(int):
    """The number of threads parallel loops use (Numba's ``set_num_threads``); more than the
    pool holds (``NUMBA_NUM_THREADS``) is capped at the pool's size."""
    numba.set_num_threads(min(_positive(int, "set_num_threads"), numba.config.NUMBA_NUM_THREADS))


def get_num_threads():
    """The number of threads parallel loops use."""
    return numba.get_num_threads()


def get_num_interop_threads():
    """Threads for running independent ops at once: nbgrad runs ops one after another on
    the calling thread, so this only reports the value set (default: the pool's size)."""
    return _interop[0] or numba.config.NUMBA_NUM_THREADS


def set_num_interop_threads(int):
    _interop[0] = _positive(int, "set_num_interop_threads")


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Kept as set: nbgrad's kernels give the same result on every run at a given thread count."""
    _deterministic[0] = bool(mode)


def are_deterministic_algorithms_enabled():
    return _deterministic[0]
