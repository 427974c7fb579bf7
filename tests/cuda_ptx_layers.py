"""The layer families' kernels (``ops/targets/cuda_layer_kernels.py``) for ``cuda_ptx_check.py``:
each with the argument types ``cuda_layers.py`` launches it with, for float32 and float64."""
from numba import boolean, float32, float64, int64, types

from nbgrad.ops.targets import cuda_layer_kernels as k


def layer_jobs():
    A = lambda t: types.Array(t, 1, "C")  # noqa: E731
    T = lambda n: types.UniTuple(int64, n)  # noqa: E731
    i, f, b = int64, float64, boolean
    ai, af = A(int64), A(float64)
    jobs = []
    for dt in (float32, float64):
        a = A(dt)
        sigs = {
            "im2col": (a, a, i, T(4), i, i, i, i, T(10), i),
            "col2im": (a, a, i, i, i, i, T(10), i),
            "max_pool": (a, ai, a, i, T(3), i, i, i, i, T(8), i),
            "max_scatter": (a, a, ai, i, i, i, ai),
            "max_gather": (a, a, ai, i, i, i, ai),
            "avg_pool": (a, a, i, T(3), i, i, i, i, ai, ai, af, ai, ai, af, i),
            "avg_pool_backward": (a, a, i, i, i, i, ai, ai, af, ai, ai, af, i),
            "batch_norm": (a, a, i, T(3), i, i, af, af, af, a, a, b, b, b, f, a, a, b, f, f),
            "batch_norm_backward": (a, a, a, a, a, i, i, af, af, a, b, b, b),
            "row_norm": (a, a, i, T(2), i, af, af, a, a, b, b, i, i, i, f),
            "row_norm_backward": (a, a, a, i, af, af, a, b, i, i, i),
            "row_norm_params": (a, a, a, a, i, i, af, af, i, i, i),
            "embedding_gather": (a, a, i, T(2), ai, i, i, i, b, ai, i),
            "embedding_scatter": (a, a, ai, i, i, i, b, ai, i),
            "renorm_rows": (a, i, T(2), ai, i, i, f, f),
        }
        jobs += [(f"{name} {dt}", getattr(k, name), sig) for name, sig in sigs.items()]
    jobs += [("count_rows", k.count_rows, (ai, ai, i)), ("mark_rows", k.mark_rows, (ai, ai, i))]
    return jobs
