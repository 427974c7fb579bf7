"""nbgrad side by side with PyTorch (CPU, eager and ``torch.compile``), JAX (``jit``) and NumPy
(forward only, as a floor), on the workloads of ``benchmarks/workloads.py``.

    python -m benchmarks.compare                # all workloads, results in .bench/
    python -m benchmarks.compare --isolated     # each library alone in its own process
    python -m benchmarks.compare --quick --only poly_1e6,mlp_step --peers torch
    python -m benchmarks.compare --snapshot     # also the reference the README quotes

The libraries take turns, round after round, so drift of a shared machine falls on all alike.
By default they share one process; with ``--isolated`` each runs in a process of its own that
the parent hands the turn to, so no library's threads or allocator share a process with
another's. Each turn starts after a short pause and one untimed call, so that the previous
library's spinning threads are idle. Libraries are warmed up first (JIT compiles are not timed;
cold start is a workload of its own). Each round gives a ratio nbgrad/peer: the table shows
their median and interquartile range, and warns when the spread or the machine's load makes
the figures doubtful.
"""
import argparse
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from statistics import median

import numpy as np

from .workloads import WORKLOADS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "benchmarks", "results", "compare.json")
PEERS = ("torch", "torch.compile", "jax", "numpy")
EXTRA = ("cold_start", "peak_memory")          # workloads measured in fresh processes

# the speed bars of issue 9: ratio nbgrad/PyTorch eager to reach
TARGETS = {"poly_1e6": 0.6, "poly_1e7": 0.5, "tutorial_5x5": 1.3, "chain_100": 1.3, "fan_in_chain": 1.3,
           "mlp_step": 1.0, "mlp_plain_ops": 1.0, "mlp_train_step": 0.8, "cross_entropy": 1.0, "cold_start": 1.0, "peak_memory": 1.0}
SPREAD_WARN = 0.10      # interquartile range of a workload's ratios, relative to their median
LOADED = 0.5            # load average per core above which the machine counts as busy


# -- libraries and their turns ------------------------------------------------------------------------
def load(name):
    """The module that runs library ``name`` ("torch.compile" is torch), or None if not installed."""
    try:
        mod = importlib.import_module(name.split(".")[0])
    except ImportError:
        return None
    if mod.__name__ == "torch":
        mod.set_num_threads(os.cpu_count())
    if mod.__name__ == "jax":
        mod.config.update("jax_platform_name", "cpu")
    return mod


def build(workload, name, mod):
    """Library ``name``'s warmed-up callable for ``workload``, or None where it has no such side."""
    w = WORKLOADS[workload]
    if name in ("numpy", "jax"):
        side = getattr(w, name)
        run = side and (side() if name == "numpy" else side(mod))
    elif name == "torch.compile" or (name == "nbgrad" and os.environ.get("NBGRAD_BENCH_COMPILED")):
        run = w.make(mod, mod.compile)
    else:
        run = w.make(mod)
    for _ in range(3 if run else 0):      # compiles, caches, allocator
        run()
    return run


def _turn(run, per_turn=3, pause_s=0.02):
    """Median seconds of ``per_turn`` calls, after a pause and one untimed call (see above)."""
    time.sleep(pause_s)
    run()
    times = []
    for _ in range(per_turn):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return median(times)


def rounds(turns, repeats, budget_s):
    """Per-round values of each library: ``turns[name]()`` measures one turn; libraries alternate."""
    values = {name: [] for name in turns}
    start = time.perf_counter()
    for i in range(repeats):
        for name, turn in turns.items():
            values[name].append(turn())
        if i >= 9 and time.perf_counter() - start > budget_s:
            break
    return values


def prepare(workload, name):
    """Library ``name``'s warmed-up callable for ``workload`` (None where it has no such side or is
    not installed), and why it failed: a peer may fail (torch.compile without a compiler), nbgrad may not."""
    mod = load(name)
    try:
        return mod and build(workload, name, mod), None
    except Exception as e:
        if name == "nbgrad":
            raise
        return None, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def in_process(workload, names, repeats, budget_s):
    """All libraries in this process. Returns per-round seconds and the peers that failed."""
    turns, failed = {}, {}
    for name in names:
        run, error = prepare(workload, name)
        if error:
            failed[name] = error
        elif run:
            turns[name] = partial(_turn, run)
    return rounds(turns, repeats, budget_s), failed


def serve(name, workload):
    """The child's side of ``isolated``: one library, one workload, a turn per line read."""
    run, error = prepare(workload, name)
    print(error or ("ready" if run else "absent"), flush=True)
    while run and sys.stdin.readline():
        print(_turn(run), flush=True)


def _ask(proc):
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def isolated(workload, names, repeats, budget_s):
    """Each library in a process of its own, taking turns. Returns as ``in_process``."""
    procs = {name: subprocess.Popen([sys.executable, "-m", "benchmarks.compare", "--serve", name, workload],
                                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name in names}
    turns, failed = {}, {}
    try:
        for name, proc in procs.items():
            answer = proc.stdout.readline().strip() or "exited without an answer"
            if answer == "ready":
                turns[name] = partial(_ask, proc)
            elif answer != "absent":
                failed[name] = answer
        if "nbgrad" in failed:
            raise RuntimeError(f"nbgrad failed on {workload} (its traceback is above)")
        return rounds(turns, repeats, budget_s), failed
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()


# -- workloads in fresh processes -----------------------------------------------------------------
_FIRST_GRADIENT = """
import time
t = time.perf_counter()
import {lib} as torch
x = torch.randn((5, 5), requires_grad=True)
a = torch.randn((5, 5), requires_grad=True)
((10 - x * a).sum()).backward()
float(x.grad.sum())
print(time.perf_counter() - t)
"""


def _run_python(code, env=None):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=ROOT)
    return out.stdout.strip().splitlines()[-1]


def _first_gradient(lib, env=None):
    return float(_run_python(_FIRST_GRADIENT.format(lib=lib), env))


def cold_start(names, repeats):
    """Import plus first gradient in a fresh process, nbgrad's kernel cache warm (and, once, empty)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NBGRAD_CACHE_DIR=cache)
        empty = _first_gradient("nbgrad", env)
        turns = {name: partial(_first_gradient, name, env if name == "nbgrad" else None)
                 for name in ("nbgrad", "torch") if name in names}
        return rounds(turns, repeats, float("inf")), {"empty_cache_s": empty}


_MEMORY = """
import os
import {lib} as lib
from benchmarks.workloads import WORKLOADS
step = WORKLOADS["mlp_step"].make(lib)
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
for _ in range(20):
    step()
after_warmup = rss()
for _ in range(180):
    step()
with open('/proc/self/status') as f:        # this process's own high-water mark
    peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))
print(peak, rss() - after_warmup)
"""


def peak_memory(names):
    """Peak resident memory over 200 MLP steps, and growth after the first 20."""
    values, growth = {}, {}
    for name in ("nbgrad", "torch"):
        if name in names:
            peak, grew = _run_python(_MEMORY.format(lib=name)).split()
            values[name], growth[name] = [int(peak)], int(grew)
    return values, {"growth_bytes": growth}


# -- statistics and reporting ---------------------------------------------------------------------
def ratio_stats(mine, theirs):
    """Median and quartiles of the per-round ratios ``mine[i] / theirs[i]``."""
    q1, mid, q3 = np.percentile(np.asarray(mine) / np.asarray(theirs), [25, 50, 75])
    return {"median": float(mid), "q1": float(q1), "q3": float(q3), "rounds": len(mine)}


def spread(stats):
    """Interquartile range relative to the median; None for a single round."""
    return (stats["q3"] - stats["q1"]) / stats["median"] if stats["rounds"] > 1 else None


def summarize(name, values, failed=None, **extra):
    """The report's entry for one workload, from each library's per-round values."""
    unit = "bytes" if name == "peak_memory" else "s"
    return {"unit": unit, "median": {lib: median(v) for lib, v in values.items()},
            "ratio": {p: ratio_stats(values["nbgrad"], v) for p, v in values.items() if p != "nbgrad"},
            "target": TARGETS.get(name), "failed": failed or {}, "rounds": values, **extra}


def _fmt(value, unit):
    if value is None:
        return "—"
    if unit == "bytes":
        return f"{value / 2 ** 20:.1f} MiB"
    return f"{value * 1e6:.1f} us" if value < 1e-3 else f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


_COLUMNS = (("peer", "<", 13), ("nbgrad", ">", 10), ("peer time", ">", 10), ("ratio", ">", 6),
            ("IQR of ratio", ">", 13), ("", "<", 6), ("bar", "<", 12))


def _row(first, cells, width):
    return (f"{first:<{width}}  " + "  ".join(f"{c:{a}{w}}" for c, (_, a, w) in zip(cells, _COLUMNS))).rstrip()


def header(width):
    return _row("workload", [c[0] for c in _COLUMNS], width)


def rows(name, entry, width):
    """The table's lines for one workload: one per peer, missing cells as "—"."""
    unit, mine, lines = entry["unit"], entry["median"]["nbgrad"], []
    for peer in [p for p in PEERS if p in entry["ratio"] or p in entry["failed"]]:
        stats, bar = entry["ratio"].get(peer), ""
        if peer == "torch" and stats and entry["target"] is not None:
            bar = f"<= {entry['target']} " + ("ok" if stats["median"] <= entry["target"] else "MISSED")
        if stats is None:
            cells = [peer, _fmt(mine, unit), "—", "—", "—", "", f"failed: {entry['failed'][peer]}"]
        else:
            s = spread(stats)
            cells = [peer, _fmt(mine, unit), _fmt(entry["median"][peer], unit), f"{stats['median']:.2f}",
                     "—" if s is None else f"{stats['q1']:.2f}–{stats['q3']:.2f}",
                     "noisy" if s is not None and s > SPREAD_WARN else "", bar]
        lines.append(_row(name if not lines else "", cells, width))
    if "empty_cache_s" in entry:
        lines.append(_row("", ["empty cache", _fmt(entry["empty_cache_s"], "s")] + [""] * 4 + ["< 5 s"], width))
    for lib, grew in entry.get("growth_bytes", {}).items():
        lines.append(_row("", [f"growth {lib}", _fmt(grew, "bytes")] + [""] * 5, width))
    return lines


def warnings(report):
    """Why the figures may not be trusted: noisy workloads, a busy machine."""
    out = [f"{name} vs {peer}: the ratios' interquartile range is {spread(s):.0%} of their median"
           for name, e in report["workloads"].items() for peer, s in e["ratio"].items()
           if spread(s) is not None and spread(s) > SPREAD_WARN]
    cpus, (start, end) = report["machine"]["cpus"], report["load_average"]
    if start > LOADED * cpus or end - 1 > LOADED * cpus:      # at the end, this run counts about 1
        out.append(f"the machine was busy: load average {start:.1f} at the start, {end:.1f} at the end, "
                   f"on {cpus} cores; other processes' work shifts the ratios")
    return out


def _versions():
    found = {}
    for dist in ("nbgrad", "torch", "jax", "numpy"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(list(WORKLOADS) + list(EXTRA)))
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, default %(default)s")
    parser.add_argument("--isolated", action="store_true", help="each library alone in its own process")
    parser.add_argument("--compiled", action="store_true",
                        help="time nbgrad.compile's version of each workload (its forward compiled, as torch.compile's)")
    parser.add_argument("--out", default=os.path.join(ROOT, ".bench", "compare.json"),
                        help="results file, beside it the chart (.png); default %(default)s")
    parser.add_argument("--snapshot", action="store_true", help=f"also write {os.path.relpath(SNAPSHOT, ROOT)}")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)     # LIB WORKLOAD: a child of --isolated
    args = parser.parse_args(argv)
    if args.serve:
        return serve(*args.serve)
    if args.snapshot and (args.only or args.quick):
        parser.error("--snapshot records a full run: drop --only and --quick")
    selected = args.only.split(",") if args.only else list(WORKLOADS) + list(EXTRA)
    peers = args.peers.split(",")
    unknown = [n for n in selected if n not in WORKLOADS and n not in EXTRA] + [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown workload or peer {unknown[0]!r}")
    names = ["nbgrad"] + peers
    if args.compiled:
        os.environ["NBGRAD_BENCH_COMPILED"] = "1"          # children of --isolated inherit it
    repeats, budget = (3, 2.0) if args.quick else (35, 20.0)
    measure = isolated if args.isolated else in_process

    report = {"mode": ("isolated" if args.isolated else "in-process") + (", nbgrad.compile" if args.compiled else ""),
              "command": " ".join(["python -m benchmarks.compare"] + (argv or sys.argv[1:])),
              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "versions": _versions(), "load_average": [os.getloadavg()[0], None], "workloads": {}}
    width = max(len(n) for n in selected + ["workload"])
    print(f"mode: {report['mode']}, load average {report['load_average'][0]:.1f} on {os.cpu_count()} cores")
    print(header(width))
    for name in selected:
        if name == "cold_start":
            values, extra = cold_start(names, 3 if args.quick else 9)
        elif name == "peak_memory":
            values, extra = peak_memory(names)
        else:
            values, failed = measure(name, names, repeats, budget)
            extra = {"failed": failed}
        entry = summarize(name, values, **extra)
        report["workloads"][name] = entry
        print("\n".join(rows(name, entry, width)), flush=True)
    report["load_average"][1] = os.getloadavg()[0]
    for line in warnings(report):
        print("warning:", line)
    for path in [args.out] + [SNAPSHOT] * args.snapshot:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
        plot(report, os.path.splitext(path)[0] + ".png")
        print(f"saved {path} and its chart")


def plot(report, path):
    """Ratios nbgrad/peer, one panel per metric, a bar group per workload, the targets as ticks."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return
    panels = [(unit, label, [n for n, e in report["workloads"].items() if e["unit"] == unit and e["ratio"]])
              for unit, label in (("s", "time"), ("bytes", "peak memory"))]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 + 1.1 * sum(len(p[2]) for p in panels), 4.5),
                             squeeze=False, gridspec_kw={"width_ratios": [len(p[2]) + 1 for p in panels]})
    for ax, (unit, label, names) in zip(axes[0], panels):
        peers = [p for p in PEERS if any(p in report["workloads"][n]["ratio"] for n in names)]
        width = 0.8 / len(peers)
        for k, peer in enumerate(peers):
            xs = [i for i, n in enumerate(names) if peer in report["workloads"][n]["ratio"]]
            stats = [report["workloads"][names[i]]["ratio"][peer] for i in xs]
            pos = [x + (k - (len(peers) - 1) / 2) * width for x in xs]
            mid = [s["median"] for s in stats]
            ax.bar(pos, mid, width, label=peer, color=f"C{PEERS.index(peer)}",
                   yerr=[[m - s["q1"] for m, s in zip(mid, stats)], [s["q3"] - m for m, s in zip(mid, stats)]])
            if peer == "torch":
                marks = [(p, report["workloads"][names[i]]["target"]) for p, i in zip(pos, xs)]
                marks = [m for m in marks if m[1] is not None]
                if marks:
                    ax.scatter(*zip(*marks), marker="_", s=300, linewidths=2, color="black", zorder=3,
                               label="bar (vs torch)")
        shown = [v for n in names for s in report["workloads"][n]["ratio"].values() for v in (s["q1"], s["q3"])]
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylim(min(shown + [0.5]) / 1.5, max(shown + [2.0]) * 1.5)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel(f"{label}: nbgrad / peer (lower is better)")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.legend(fontsize=8)
    fig.suptitle(f"nbgrad vs peers ({report['mode']}): medians of per-round ratios, interquartile ranges")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
