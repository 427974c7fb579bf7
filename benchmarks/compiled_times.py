"""nbgrad.compile's own time per iteration of workloads, no peers: for A/B comparisons of two
checkouts on a busy machine (run each in turn, several rounds, compare the best).

    PYTHONPATH=CHECKOUT python benchmarks/compiled_times.py poly_1e7,chain_100 [SECONDS]

Prints the median and best wall time per iteration and the median CPU time (all threads).
"""
import statistics
import sys
import time
import warnings


def measure(run, seconds):
    for _ in range(3):
        run()
    n = 1
    while True:                                # batches of at least 50 ms
        start = time.perf_counter()
        for _ in range(n):
            run()
        if time.perf_counter() - start > 0.05:
            break
        n *= 2
    walls, cpus = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(walls) < 5:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            run()
        walls.append((time.perf_counter() - wall) / n)
        cpus.append((time.process_time() - cpu) / n)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def _format(s):
    return f"{s * 1e3:8.3f} ms" if s > 1e-3 else f"{s * 1e6:8.1f} us"


def main(argv):
    import nbgrad
    from benchmarks.workloads import WORKLOADS
    seconds = float(argv[1]) if len(argv) > 1 else 2.0
    for name in argv[0].split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = WORKLOADS[name].make(nbgrad, nbgrad.compile)
            median, best, cpu = measure(run, seconds)
        print(f"{name:15s} wall {_format(median)}  best {_format(best)}  cpu {_format(cpu)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
