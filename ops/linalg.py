"""Matrix products: every one is a batch of ``out[i] = op(a[i]) @ op(b[i])``.

mm, mv, dot and bmm all run the one kernel: 2-D operands come as a batch of one, a
vector as a one-column (or one-row) matrix. Numba's ``np.dot`` calls BLAS (through
SciPy) and itself picks gemm, gemv or dot from the shapes, so a matrix-vector product
is not a slow one-column gemm.

Operands are C-contiguous 3-D arrays. One whose last two axes are swapped (``W.t()``,
the weight of every linear layer) is passed as the C-contiguous array it is a view of,
with its flag ``ta``/``tb`` set: BLAS reads it transposed in place, where a copy would
cost as much memory traffic as a small product itself. Inside the kernel ``x.T`` of a
C array is an F array, which Numba's ``np.dot`` hands to BLAS as the transpose.
"""
import numpy as np
from numba import njit

from . import blas_threads
from ._cache import guard
from .elementwise import copy_of

__all__ = ["bmm", "operand", "add_rows"]


@njit(cache=True, nogil=True)
def bmm_blas(out, a, b, ta, tb):
    for i in range(out.shape[0]):
        if ta:
            if tb:
                np.dot(a[i].T, b[i].T, out[i])
            else:
                np.dot(a[i].T, b[i], out[i])
        elif tb:
            np.dot(a[i], b[i].T, out[i])
        else:
            np.dot(a[i], b[i], out[i])


@njit(cache=True, nogil=True)
def bmm_loop(out, a, b, ta, tb):
    """Integers, which BLAS has no routine for. (Shapes are checked here, where it costs
    nothing: this loop indexes without bounds checks; ``np.dot`` checks its own.)"""
    nb, n, m = out.shape
    k = a.shape[1] if ta else a.shape[2]
    if (a.shape[0] != nb or b.shape[0] != nb or (a.shape[2] if ta else a.shape[1]) != n
            or (b.shape[1] if tb else b.shape[2]) != m or (b.shape[2] if tb else b.shape[1]) != k):
        raise ValueError("bmm_loop: operand shapes do not match")
    for i in range(nb):
        for r in range(n):
            for c in range(m):
                s = out.dtype.type(0)
                for p in range(k):
                    x = a[i, p, r] if ta else a[i, r, p]
                    y = b[i, c, p] if tb else b[i, p, c]
                    s += x * y
                out[i, r, c] = s


@njit(cache=True, nogil=True)
def add_rows(out, v):
    """``out[i, :] += v``: a linear layer's bias added into its fresh product in place,
    a row at a time, so the loop runs over contiguous memory and vectorises."""
    if v.shape[0] != out.shape[1]:
        raise ValueError("add_rows: the vector does not match the rows")
    for i in range(out.shape[0]):
        row = out[i]
        for j in range(row.shape[0]):
            row[j] += v[j]


def operand(x):
    """``x`` (3-D) as a C-contiguous array and whether that array holds its transpose."""
    if x.flags.c_contiguous:
        return x, False
    xt = x.swapaxes(1, 2)
    if xt.flags.c_contiguous:
        return xt, True
    return copy_of(x), False


def bmm(a, b):
    """``a @ b`` for 3-D arrays of one dtype and batch size, of any strides; a new array."""
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    (a, ta), (b, tb) = operand(a), operand(b)
    if a.dtype.kind == "f":
        blas_threads.for_product(2 * out.shape[1] * out.shape[2] * (a.shape[1] if ta else a.shape[2]))
        bmm_blas(out, a, b, ta, tb)
    else:
        bmm_loop(out, a, b, ta, tb)
    return out


guard(globals())      # a damaged Numba cache of these kernels is rebuilt, not an error on every run
