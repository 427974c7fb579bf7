"""Where the parallel elementwise loop starts to beat the serial one on this machine.

    python benchmarks/threshold.py

Prints, per size, the median time of the serial and the ``prange`` kernel for a cheap op
(``mul``) and a costly one (``tanh``), in float32; ``ops.elementwise.PARALLEL_MIN`` is set
from where the parallel loop wins for the cheap op.
"""
import time

import numpy as np

from nbgrad.ops.elementwise import OPS


def median_time(fn, repeat=51):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    print(f"{'op':6} {'size':>9} {'serial us':>10} {'parallel us':>12} {'ratio p/s':>10}")
    for name in ("mul", "tanh"):
        op = OPS[name]
        n_args = len(op.args)
        for exp in range(10, 21):
            n = 1 << exp
            x = np.random.rand(n).astype(np.float32)
            out = np.empty_like(x)
            args = (out,) + (x,) * n_args
            serial = getattr(op.module, "s_" + "c" * n_args)
            parallel = getattr(op.module, "p_" + "c" * n_args)
            serial(*args)
            parallel(*args)
            ts = median_time(lambda: serial(*args))
            tp = median_time(lambda: parallel(*args))
            print(f"{name:6} {n:>9} {ts * 1e6:>10.1f} {tp * 1e6:>12.1f} {tp / ts:>10.2f}")


if __name__ == "__main__":
    main()
