"""A workload's CPU time per iteration on one thread, nbgrad beside PyTorch.

    python -m benchmarks.cpu_time cnn_step [mlp_step ...]
    python -m benchmarks.cpu_time --libs nbgrad.compile,torch,torch.compile mlp_train_step

Why: on a shared machine, wall times of multi-threaded code measure the other processes as much
as the code (every parallel launch waits for a descheduled thread; ``compare.py`` then warns
"noisy"). With every thread pool at one thread (Numba, OpenBLAS, PyTorch's OpenMP) and the
process's CPU time instead of the clock, the figure counts only the work each library does, so
it stays put under load. It says nothing about parallel speed: quote it beside ``compare.py``,
not instead of it. Each library runs in its own process, alternating, and the medians of the
rounds' per-iteration CPU times are printed with their ratio (the first library's over each
other's; ``X.compile`` is the workload's compiled side, as ``compare.py --compiled`` builds it).
"""
import json
import os
import statistics
import subprocess
import sys

ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def measure(lib_name, workload, iterations=30, warmup=3):
    """Per-iteration CPU times (ms) of ``workload`` in this process."""
    import time

    import nbgrad
    import torch

    from .workloads import WORKLOADS
    torch.set_num_threads(1)
    mod = nbgrad if lib_name.startswith("nbgrad") else torch
    make = WORKLOADS[workload].make
    run = make(mod, mod.compile) if lib_name.endswith(".compile") else make(mod)
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        t = time.process_time()
        run()
        times.append((time.process_time() - t) * 1e3)
    return times


def main(workloads, rounds=3, libs=("nbgrad", "torch")):
    env = dict(os.environ, **ONE_THREAD)
    for workload in workloads:
        medians = {lib: [] for lib in libs}
        for _ in range(rounds):
            for lib in medians:
                out = subprocess.run([sys.executable, "-m", "benchmarks.cpu_time", "--child", lib, workload],
                                     env=env, capture_output=True, text=True, check=True).stdout
                medians[lib].append(statistics.median(json.loads(out.splitlines()[-1])))
        first, ours = libs[0], statistics.median(medians[libs[0]])
        for other in libs[1:]:
            theirs = statistics.median(medians[other])
            print(f"{workload}: {first} {ours:.2f} ms, {other} {theirs:.2f} ms CPU per iteration on one thread, "
                  f"ratio {ours / theirs:.2f} (rounds: "
                  f"{', '.join(f'{a / b:.2f}' for a, b in zip(medians[first], medians[other]))})")


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "--libs":
        main(sys.argv[3:], libs=tuple(sys.argv[2].split(",")))
    else:
        main(sys.argv[1:])
