"""Process settings that the kernels' speed depends on, applied once at import.

* OpenBLAS threads (matmul) spin for ~0.1 s after each call by default, taking the cores
  that the parallel kernels which follow need: a matmul-then-elementwise training step ran
  5x slower. They spin briefly instead, unless the user chose otherwise. This must happen
  before SciPy's OpenBLAS (which Numba's ``np.dot`` calls) is loaded.
* glibc's malloc hands arrays over 128 KiB out as fresh ``mmap`` pages, and gives freed
  heap back to the system: every training step then page-faults its activations and
  gradients in again (475 faults per step of the MLP benchmark, a fifth of its time).
  nbgrad raises both thresholds so that freed arrays are reused, as PyTorch's allocator
  reuses its blocks. ``NBGRAD_MALLOC_TUNING=0``, or glibc's own ``MALLOC_MMAP_THRESHOLD_``/
  ``MALLOC_TRIM_THRESHOLD_`` variables, leave malloc alone.
"""
import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20           # glibc's largest (64-bit): bigger arrays still get their own pages
TRIM_THRESHOLD = 128 << 20          # free heap kept for reuse before any is given back


def configure():
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    if _malloc_tuning_wanted():
        _tune_malloc()


def _malloc_tuning_wanted():
    if os.environ.get("NBGRAD_MALLOC_TUNING", "1") == "0":
        return False
    return not any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))


def _tune_malloc():
    """``mallopt`` where the C library is glibc; elsewhere nothing happens."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))
