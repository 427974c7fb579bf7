"""How many threads the BLAS behind Numba's ``np.dot`` may use for one matrix product.

Numba's ``np.dot`` calls BLAS through ``scipy.linalg.cython_blas``: SciPy's own OpenBLAS,
another library (with another thread pool) than NumPy's. OpenBLAS threads every product of
more than ~0.26M multiply-adds. Its workers sleep between jobs (``nbgrad._runtime`` shortens
their spin so that they leave the cores to Numba's parallel loops), so each threaded product
waits for a sleeping worker to be woken and given a core: on a busy machine that wait is a
scheduler time slice, and a product that takes 0.2 ms alone took 6-25 ms inside a training
loop. A small product gains little from a second thread even when one is free
(``benchmarks/blas_threads.py`` measures it), so products below ``SMALL_FLOPS`` run on one
BLAS thread and wake no one; larger ones get the count BLAS had otherwise (its default, the
user's ``OPENBLAS_NUM_THREADS``, a ``threadpoolctl`` limit), unless the machine is busy:
when the load average (read at most once a second) reaches the process's CPU count plus one,
no core is free for a second thread, and a threaded product waited for one: 512x512 float32
took 60 ms threaded and 2 ms on one thread at load 9 on 2 cores (``make -l`` holds back jobs
on the same signal).

The count is OpenBLAS's global setting, changed only when the wanted count changes, so a
training loop pays for two calls per switch, not per product. A count found different from
the one nbgrad last set was set by someone else, and becomes the count for large products.
(A limit of exactly 1 set while nbgrad had just set 1 cannot be told apart from nbgrad's
own: the next large product still gets the earlier count.) With another BLAS, or an OpenBLAS built
single-threaded or on OpenMP, nothing is changed.
"""
import ctypes
import os
import threading
import time

__all__ = ["SMALL_FLOPS", "for_product", "available"]

# products of fewer floating-point operations (2*m*n*k per matrix) run on one BLAS thread.
# Measured with benchmarks/blas_threads.py (float32, 2 cores, load 9, best rounds, us, 2
# threads / 1 thread): 1 MFLOP 8.4/8.4, 4.2 MFLOP (32x128@128x512) 54/42 and 51/33,
# 16.8 MFLOP 109/117: a second thread starts to pay from here, when it finds a core.
SMALL_FLOPS = 1 << 24

# large products too run on one thread while the load average is at least the CPU count plus
# this (None: never)
BUSY_MARGIN = 1.0

_PTHREADS = 1                       # openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP


def _controls():
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS that ``cython_blas`` links, or
    ``(None, None)``. Symbols are looked up through ``cython_blas``'s own handle, which
    searches the libraries it depends on and no others (not NumPy's OpenBLAS)."""
    try:
        from scipy.linalg import cython_blas
        lib = ctypes.CDLL(cython_blas.__file__)
    except (ImportError, OSError):
        return None, None
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("", "64_"):
            try:
                set_threads = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                get_threads = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                get_parallel = getattr(lib, f"{prefix}_get_parallel{suffix}")
            except AttributeError:
                continue
            set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
            get_threads.argtypes, get_threads.restype = [], ctypes.c_int
            get_parallel.argtypes, get_parallel.restype = [], ctypes.c_int
            if get_parallel() != _PTHREADS:
                return None, None
            return set_threads, get_threads
    return None, None


_set, _get = None, None
_found = False
_lock = threading.Lock()
_last = None                        # the count nbgrad last set
_large = None                       # the count for large products


def available():
    """Whether nbgrad can set the thread count of the BLAS that its products call."""
    _find()
    return _set is not None


def _find():
    global _set, _get, _found
    with _lock:
        if not _found:
            _set, _get = _controls()
            _found = True


def for_product(flops):
    """Set the BLAS thread count for a product of ``flops`` floating-point operations."""
    small = flops < SMALL_FLOPS or _busy()
    if _last is not None and (_last == 1 if small else _last == _large):
        return                      # the usual case: already set
    if not _found:
        _find()
    if _set is not None:
        _switch(small)


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_CPUS = _cpus()
_busy_at = -2.0
_busy_now = False


def _busy():
    """Whether the load average leaves no core for a second thread; re-read once a second."""
    global _busy_at, _busy_now
    now = time.monotonic()
    if now - _busy_at > 1.0:
        _busy_at = now
        try:
            _busy_now = BUSY_MARGIN is not None and os.getloadavg()[0] >= _CPUS + BUSY_MARGIN
        except (AttributeError, OSError):
            _busy_now = False
    return _busy_now


def _switch(small):
    global _last, _large
    with _lock:
        current = _get()
        if current != _last:        # not nbgrad's setting: the user's, so the large count
            _large = current
        want = 1 if small else _large
        if want != current:
            _set(want)
        _last = want
