"""Singular value decomposition of a batch of matrices (LAPACK's gesdd through Numba's
``np.linalg.svd``), for the nuclear and spectral norms and ``linalg.svdvals``.

A matrix with a NaN or infinity is refused by LAPACK; its position in the batch is
returned (-1: none) and the caller raises.
"""
import numpy as np
from numba import njit

from ._cache import guard

__all__ = ["svd_batch"]


@njit(cache=True, nogil=True)
def _svd_batch(a, u, s, vh):
    for b in range(a.shape[0]):
        m = a[b]
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if not np.isfinite(m[i, j]):
                    return b
        ub, sb, vb = np.linalg.svd(m, full_matrices=False)
        u[b] = ub
        s[b] = sb
        vh[b] = vb
    return -1


def svd_batch(a):
    """(U, S, Vh, bad) of each matrix of the C-contiguous 3-D ``a``: the reduced SVD,
    singular values descending; ``bad`` is the first matrix that is not finite, or -1."""
    batch, m, n = a.shape
    k = min(m, n)
    u = np.zeros((batch, m, k), a.dtype)
    s = np.zeros((batch, k), a.dtype)
    vh = np.zeros((batch, k, n), a.dtype)
    bad = _svd_batch(a, u, s, vh) if batch and k else -1
    return u, s, vh, bad


guard(globals())
