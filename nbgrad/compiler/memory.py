"""Large buffers come back from the heap instead of from new pages.

glibc's malloc maps every block above its mmap threshold (at most 32 MiB) afresh and unmaps it
on free, so a compiled program that makes a 40 MB gradient on every call pays a page fault
and the zeroing of each new page, about as long as the fused pass itself. Once a program
allocates such blocks, malloc is told to take large blocks from the heap too and to keep up
to ``KEEP`` bytes of freed memory at its top: the next call's buffer reuses the last one's
pages. Memory is only reused once freed (a gradient the user holds is never touched), and the
process keeps at most ``KEEP`` freed bytes it would otherwise have returned. Without glibc
(or with ``NBGRAD_KEEP_HEAP=0``) nothing changes.
"""
import ctypes
import os
import threading

__all__ = ["keep_large_buffers", "LARGE", "KEEP"]

LARGE = 32 << 20               # bytes: glibc maps blocks above this afresh on every allocation
KEEP = 512 << 20               # freed bytes the heap keeps for reuse
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_lock = threading.Lock()
_done = []


def keep_large_buffers():
    """Make malloc reuse freed large blocks (once per process); whether it now does."""
    with _lock:
        if not _done:
            _done.append(_apply())
        return _done[0]


def _apply():
    if os.environ.get("NBGRAD_KEEP_HEAP", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP)) and bool(mallopt(_M_MMAP_MAX, 0))
