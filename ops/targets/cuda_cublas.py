"""Matrix products through cuBLAS, by CuPy, when CuPy is installed and a real GPU runs.

Chosen once, at import: ``ENABLED`` is true only outside the simulator and where ``import
cupy`` works. Then ``bmm`` hands CuPy zero-copy views of our device buffers (through their
``__cuda_array_interface__``, any strides) and lets ``cupy.matmul`` write into our output
(cuBLAS batched GEMM for float32/float64). Everything else, and every product under the
simulator, is the tiled Numba kernel (``cuda_kernels.matmul_kernel``).

UNTESTED: no GPU was available where this was written; the simulator never takes this path.
"""
from numba import config

__all__ = ["ENABLED", "bmm"]

cupy = None
if not config.ENABLE_CUDASIM:
    try:
        import cupy
    except Exception:                  # not installed, or no usable CUDA runtime for it
        cupy = None
ENABLED = cupy is not None


def bmm(a, b, out):
    """``out = a @ b`` for 3-D float32/float64 ``DeviceArray`` s of one dtype (``out``
    C-contiguous, made by the caller); returns ``out``."""
    cupy.matmul(cupy.asarray(a), cupy.asarray(b), out=cupy.asarray(out))
    return out
