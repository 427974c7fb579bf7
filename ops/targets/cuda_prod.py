"""``prod``'s backward where the input has zeros, on CUDA: ``g`` times the product of the other
elements of each reduced slice, exact with zeros (no division). One thread per output of the
product; it walks its slice forward (exclusive prefix products, stored) and back (times ``g``
and the suffix products), in float64 as the CPU loop (``ops/reduce.py``'s ``prod_backward``)."""
from numba import cuda, float64

__all__ = ["prod_backward_kernel"]


@cuda.jit(device=True)
def _unravel(i, base, shape, strides, gbase, gstrides):
    p = base
    pg = gbase
    rem = i
    for d in range(len(shape) - 1, -1, -1):
        q = rem % shape[d]
        rem //= shape[d]
        p += q * strides[d]
        pg += q * gstrides[d]
    return p, pg


@cuda.jit
def prod_backward_kernel(x, xo, kshape, kstr, rshape, rstr, nred, g, gx, gkstr, grstr, nout):
    """``x``'s slices by the plan (kept and reduced shapes and element strides); ``gx`` of x's
    shape with its own strides (``gkstr``, ``grstr``); ``g`` flat, one value per slice."""
    j = cuda.grid(1)
    if j >= nout:
        return
    base, gbase = _unravel(j, xo, kshape, kstr, 0, gkstr)
    ps = float64(1.0)
    for r in range(nred):
        p, pg = _unravel(r, base, rshape, rstr, gbase, grstr)
        gx[pg] = ps
        ps *= x[p]
    ps = float64(g[j])
    for r in range(nred - 1, -1, -1):
        p, pg = _unravel(r, base, rshape, rstr, gbase, grstr)
        gx[pg] *= ps
        ps *= x[p]
