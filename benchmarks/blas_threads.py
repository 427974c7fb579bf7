"""Small matrix products and BLAS threads: where a second BLAS thread starts to pay.

    python -m benchmarks.blas_threads [--repeat 7] [--iters 300]

Prints which BLAS libraries the process holds (``threadpoolctl``, when installed) and which
one Numba's ``np.dot`` reaches, then two tables under the policies ``threaded`` (every
product with BLAS's own thread count, as before ``ops/blas_threads.py``), ``one`` (every
product on one thread), ``nbgrad`` (products below ``SMALL_FLOPS`` on one thread, larger
ones too while the machine is busy) and ``no-busy`` (``nbgrad`` without the busy rule):

* ``alone``: one product at a time, per size, threaded and one (where a second thread
  starts to pay);
* ``loop``: the product inside a loop, between a parallel (``prange``) and a serial Numba
  elementwise kernel, as in a training step; the time of the product call and of the
  whole iteration;
* ``workloads``: ``benchmarks/workloads.py``'s training steps (``--workloads``), per call,
  under ``threaded`` (what nbgrad did before) and the others, in one process.

Each figure is the median over ``--repeat`` rounds (policies alternating round by round, so
that a shared machine's drift falls on both) of each round's median, with the spread of the
round medians (min-max).
"""
import argparse
import os
import time
from statistics import median

import nbgrad  # noqa: F401  (its import-time BLAS settings, as a user gets them)
import numpy as np

from nbgrad.ops import blas_threads, linalg
from nbgrad.ops.elementwise import OPS, PARALLEL_MIN

SIZES = [(64, 64, 128), (32, 128, 512), (128, 128, 128), (128, 256, 256), (256, 256, 256),
         (256, 512, 512), (512, 512, 512)]
LOOP_SIZES = [(64, 64, 128), (32, 128, 512), (256, 784, 256)]
# policy: (SMALL_FLOPS, BUSY_MARGIN)
POLICIES = {"threaded": (0, None), "one": (float("inf"), None),
            "nbgrad": (blas_threads.SMALL_FLOPS, blas_threads.BUSY_MARGIN),
            "no-busy": (blas_threads.SMALL_FLOPS, None)}


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    return [f"{d['internal_api']} {d['version']} {d.get('threading_layer')} threads={d['num_threads']} "
            f"{os.path.basename(d['filepath'])}" for d in threadpool_info()]


def operands(m, k, n, dtype):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((1, m, k)).astype(dtype), rng.standard_normal((1, k, n)).astype(dtype))


def alone(a, b, iters):
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        linalg.bmm(a, b)
        times.append(time.perf_counter() - t)
    return median(times)


def loop(a, b, iters):
    """Median time of the product call and of a whole iteration (product, a parallel
    elementwise multiply over ``PARALLEL_MIN`` elements, a serial tanh of the product)."""
    big = np.ones(PARALLEL_MIN, np.float32)
    big_out = np.empty_like(big)
    mul, tanh = OPS["mul"], OPS["tanh"]
    t_prod, t_iter = [], []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = linalg.bmm(a, b)
        t1 = time.perf_counter()
        mul(big_out, big, big)
        tanh(np.empty_like(out), out)
        t2 = time.perf_counter()
        t_prod.append(t1 - t0)
        t_iter.append(t2 - t0)
    return median(t_prod), median(t_iter)


def rounds(fn, repeat, policies=tuple(POLICIES)):
    """``{policy: [round results]}``, the policies alternating round by round."""
    results = {p: [] for p in policies}
    for _ in range(repeat):
        for policy in policies:
            blas_threads.SMALL_FLOPS, blas_threads.BUSY_MARGIN = POLICIES[policy]
            blas_threads._busy_at = -2.0
            fn()                                # warm: kernels compiled, thread count switched
            results[policy].append(fn())
    blas_threads.SMALL_FLOPS, blas_threads.BUSY_MARGIN = POLICIES["nbgrad"]
    return results


def spread(values, scale=1e6):
    values = [v * scale for v in values]
    return f"{median(values):9.2f} ({min(values):.2f}-{max(values):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--workloads", default="mlp_step,mlp_plain_ops,lstm_step")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per workload and round")
    parser.add_argument("--skip", default="", help="tables to leave out: alone,loop")
    args = parser.parse_args()
    available = blas_threads.available()        # loads SciPy's BLAS, so that it is listed
    print("BLAS libraries:", *blas_info(), sep="\n  ")
    print("nbgrad sets threads of Numba's BLAS:", available,
          f"SMALL_FLOPS={blas_threads.SMALL_FLOPS:.3g}", f"load average {os.getloadavg()[0]:.1f}")

    print(f"\nalone, {args.dtype}, us: median of round medians (min-max)")
    alone_policies = ("threaded", "one")
    print(f"{'m x k @ k x n':>18} {'MFLOP':>7} " + " ".join(f"{p:>26}" for p in alone_policies))
    for m, k, n in ([] if "alone" in args.skip else SIZES):
        a, b = operands(m, k, n, args.dtype)
        iters = max(5, min(args.iters, int(3e8 / (m * k * n))))
        res = rounds(lambda: alone(a, b, iters), args.repeat, alone_policies)
        print(f"{f'{m}x{k} @ {k}x{n}':>18} {2 * m * k * n / 1e6:7.1f} "
              + " ".join(f"{spread(res[p]):>26}" for p in alone_policies))

    print(f"\nloop (product, parallel mul of {PARALLEL_MIN}, serial tanh), {args.dtype}, us")
    print(f"{'m x k @ k x n':>18} {'policy':>9} {'product':>26} {'iteration':>26}")
    for m, k, n in ([] if "loop" in args.skip else LOOP_SIZES):
        a, b = operands(m, k, n, args.dtype)
        res = rounds(lambda: loop(a, b, args.iters), args.repeat)
        for p in POLICIES:
            print(f"{f'{m}x{k} @ {k}x{n}':>18} {p:>9} {spread([r[0] for r in res[p]]):>26} "
                  f"{spread([r[1] for r in res[p]]):>26}")

    if args.workloads:
        workloads_table(args)


def per_call(run, budget):
    """Median seconds per call of ``run`` over ``budget`` seconds (at least 3 calls)."""
    times, end = [], time.perf_counter() + budget
    while len(times) < 3 or time.perf_counter() < end:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return median(times)


def workloads_table(args):
    from .workloads import WORKLOADS
    policies = ("threaded", "nbgrad", "no-busy", "one")
    print(f"\nworkloads, ms per call: median of round medians (min-max), {args.repeat} rounds")
    print(f"{'workload':>14} " + " ".join(f"{p:>24}" for p in policies))
    for name in args.workloads.split(","):
        run = WORKLOADS[name].make(nbgrad)
        res = rounds(lambda: per_call(run, args.budget), args.repeat, policies)
        print(f"{name:>14} " + " ".join(f"{spread(res[p], 1e3):>24}" for p in policies))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
