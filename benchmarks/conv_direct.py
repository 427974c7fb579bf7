"""im2col + BLAS against a direct Numba loop, for the convolutions of the ``cnn_step`` workload
(why ``ops/conv.py`` uses im2col).

    python -m benchmarks.conv_direct

The direct kernel is the seven-deep loop ordered for memory (per sample and output channel,
each kernel tap's weight times the input rows it meets, added into the output rows, so the
innermost loop runs along contiguous rows), reading the input in place with bounds checks for
the padding, in parallel over samples. Both are timed on the same operands; the script checks that they agree and prints the
fastest of several runs of each, in CPU time (``process_time``) and wall time.
"""
import time

import numpy as np
from numba import njit, prange

from nbgrad.ops import conv


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def direct(out, x, w, b, sh, sw, ph, pw, dh, dw):
    n_, c_, h_, w_ = x.shape
    o_, _, kh, kw = w.shape
    _, _, oh_, ow_ = out.shape
    for n in prange(n_):
        for o in range(o_):
            for oh in range(oh_):
                for ow in range(ow_):
                    out[n, o, oh, ow] = b[o]
            for c in range(c_):
                for i in range(kh):
                    for j in range(kw):
                        wv = w[o, c, i, j]
                        for oh in range(oh_):
                            ih = oh * sh - ph + i * dh
                            if 0 <= ih < h_:
                                for ow in range(ow_):          # contiguous: vectorises when sw == 1
                                    iw = ow * sw - pw + j * dw
                                    if 0 <= iw < w_:
                                        out[n, o, oh, ow] += x[n, c, ih, iw] * wv


def best(fn, repeats=30):
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(cpu) * 1e3, min(wall) * 1e3


def main():
    rng = np.random.default_rng(0)
    for name, xs, ws in [("conv1 64x1x28x28 * 8x1x3x3", (64, 1, 28, 28), (8, 1, 3, 3)),
                         ("conv2 64x8x13x13 * 16x8x3x3", (64, 8, 13, 13), (16, 8, 3, 3))]:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        ref, _ = conv.forward(x, w, b, (1, 1), (0, 0), (0, 0), (1, 1), 1)
        out = np.empty_like(ref)
        direct(out, x, w, b, 1, 1, 0, 0, 1, 1)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        im2col = best(lambda: conv.forward(x, w, b, (1, 1), (0, 0), (0, 0), (1, 1), 1))
        loop = best(lambda: direct(out, x, w, b, 1, 1, 0, 0, 1, 1))
        print(f"{name}: im2col+BLAS {im2col[0]:.2f} ms CPU / {im2col[1]:.2f} ms wall, "
              f"direct {loop[0]:.2f} ms CPU / {loop[1]:.2f} ms wall")


if __name__ == "__main__":
    main()
