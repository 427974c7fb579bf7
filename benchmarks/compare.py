"""nbgrad side by side with PyTorch (CPU), JAX (jit) and NumPy (forward only, as a floor).

    python -m benchmarks.compare            # all workloads, full repeats
    python -m benchmarks.compare --quick    # fewer repeats (a smoke run)
    python -m benchmarks.compare --only poly_1e6,mlp_step

Each workload is timed in one process with the libraries alternating call by call, so drift
of a shared, noisy machine falls on all of them alike. Every library is warmed up first
(JIT compiles are not timed here; cold start is its own workload). The table shows medians
and the ratio nbgrad/peer (lower is better); results go to ``benchmarks/results/compare.json``
and a bar chart to ``benchmarks/results/compare.png``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from statistics import median

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


# -- workloads: each returns {library: zero-argument callable} ------------------------------------
def poly(n):
    """``x**3 + 7*x**2 + 5*x + 10``, ``.sum().backward()``, float32."""
    def build(libs):
        x0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        runs = {}
        for name in ("nbgrad", "torch"):
            if name in libs:
                lib = libs[name]
                x = lib.tensor(x0, requires_grad=True)

                def run(x=x):
                    y = x ** 3 + 7 * x ** 2 + 5 * x + 10
                    y.sum().backward()
                    x.grad = None
                runs[name] = run
        if "jax" in libs:
            jax, jnp = libs["jax"], libs["jax"].numpy
            g = jax.jit(jax.grad(lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum()))
            xj = jnp.asarray(x0)
            runs["jax"] = lambda: g(xj).block_until_ready()
        runs["numpy"] = lambda: (x0 ** 3 + 7 * x0 ** 2 + 5 * x0 + 10).sum()
        return runs
    return build


def tutorial_graph(libs):
    """The tutorial's 5x5 graph, whole iteration (tensors made inside)."""
    runs = {}
    for name in ("nbgrad", "torch"):
        if name in libs:
            lib = libs[name]

            def run(lib=lib):
                a, x1, x2, x3, x4 = (lib.randn((5, 5), requires_grad=True) for _ in range(5))
                b = x1 * a
                c = x2 * a
                d = x3 * b + x4 * c
                (10 - d).sum().backward()
            runs[name] = run
    if "jax" in libs:
        jax = libs["jax"]

        def loss(a, x1, x2, x3, x4):
            d = x3 * (x1 * a) + x4 * (x2 * a)
            return (10 - d).sum()
        g = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))
        key = [jax.random.PRNGKey(0)]

        def run_jax():
            key[0], *ks = jax.random.split(key[0], 6)
            xs = [jax.random.normal(k, (5, 5)) for k in ks]
            jax.block_until_ready(g(*xs))
        runs["jax"] = run_jax
    return runs


def chain_100(libs):
    """100 elementwise ops on a 5x5 tensor, forward and backward."""
    x0 = np.random.default_rng(1).standard_normal((5, 5)).astype(np.float32)

    def body(y, lib_tanh):
        for i in range(25):
            y = y * 1.01
            y = y + 0.1
            y = lib_tanh(y)
            y = y - 0.05
        return y
    runs = {}
    for name in ("nbgrad", "torch"):
        if name in libs:
            lib = libs[name]
            x = lib.tensor(x0, requires_grad=True)

            def run(x=x, lib=lib):
                body(x, lib.tanh).sum().backward()
                x.grad = None
            runs[name] = run
    if "jax" in libs:
        jax, jnp = libs["jax"], libs["jax"].numpy
        g = jax.jit(jax.grad(lambda x: body(x, jnp.tanh).sum()))
        xj = jnp.asarray(x0)
        runs["jax"] = lambda: g(xj).block_until_ready()
    runs["numpy"] = lambda: body(x0, np.tanh).sum()
    return runs


def mlp_training_step(lib, seed=0):
    """One SGD step of workload 4, as a function of the library that runs it."""
    nn = lib.nn
    lib.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    x = lib.tensor(rng.standard_normal((256, 784)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 256))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def mlp_step(libs):
    """MLP 784-256-10, batch 256, ReLU, log-softmax cross-entropy, one SGD step."""
    runs = {name: mlp_training_step(libs[name]) for name in ("nbgrad", "torch") if name in libs}
    if "jax" in libs:
        jax, jnp = libs["jax"], libs["jax"].numpy
        rng = np.random.default_rng(0)
        params = [jnp.asarray(rng.standard_normal(s).astype(np.float32) * 0.05) for s in
                  ((784, 256), (256,), (256, 10), (10,))]
        x = jnp.asarray(rng.standard_normal((256, 784)).astype(np.float32))
        y = jnp.asarray(rng.integers(0, 10, 256))

        def loss(ps):
            h = jnp.maximum(x @ ps[0] + ps[1], 0)
            logp = jax.nn.log_softmax(h @ ps[2] + ps[3])
            return -logp[jnp.arange(256), y].mean()

        @jax.jit
        def step(ps):
            return [p - 0.01 * g for p, g in zip(ps, jax.grad(loss)(ps))]
        state = [params]

        def run_jax():
            state[0] = step(state[0])
            jax.block_until_ready(state[0])
        runs["jax"] = run_jax
    return runs


def cross_entropy(libs):
    """log-softmax cross-entropy forward and backward on 4096x1000 logits."""
    rng = np.random.default_rng(2)
    z0 = rng.standard_normal((4096, 1000)).astype(np.float32)
    t0 = rng.integers(0, 1000, 4096)
    runs = {}
    for name in ("nbgrad", "torch"):
        if name in libs:
            lib = libs[name]
            z = lib.tensor(z0, requires_grad=True)
            t = lib.tensor(t0)

            def run(z=z, t=t, lib=lib):
                lib.nn.functional.cross_entropy(z, t).backward()
                z.grad = None
            runs[name] = run
    if "jax" in libs:
        jax, jnp = libs["jax"], libs["jax"].numpy

        def loss(z):
            return -jax.nn.log_softmax(z)[jnp.arange(4096), t0].mean()
        g = jax.jit(jax.grad(loss))
        zj = jnp.asarray(z0)
        runs["jax"] = lambda: g(zj).block_until_ready()

    def run_numpy():
        m = z0.max(1, keepdims=True)
        logp = z0 - m - np.log(np.exp(z0 - m).sum(1, keepdims=True))
        return -logp[np.arange(4096), t0].mean()
    runs["numpy"] = run_numpy
    return runs


WORKLOADS = {
    "poly_1e6": poly(10 ** 6),
    "poly_1e7": poly(10 ** 7),
    "tutorial_5x5": tutorial_graph,
    "chain_100": chain_100,
    "mlp_step": mlp_step,
    "cross_entropy": cross_entropy,
}

# the speed bar of issue 3: ratio nbgrad/PyTorch to reach
TARGETS = {"poly_1e7": 0.5, "poly_1e6": 0.7, "tutorial_5x5": 1.5, "chain_100": 1.5, "mlp_step": 1.0,
           "cross_entropy": 1.0, "cold_start_warm_cache": 1.0, "peak_memory": 1.0}


def measure_alternating(runs, repeats, budget_s, per_turn=3, pause_s=0.02):
    """Median seconds per call of each run. The libraries take turns, round after round, so
    drift of the machine falls on all alike. Each turn starts with a short pause and one
    untimed call, because the previous library's threads may still be spinning on the
    cores (OpenMP, OpenBLAS and XLA all spin-wait for a while after their work): on two
    cores, PyTorch's spinning OpenMP threads made the next library's first steps wait
    for milliseconds, which no user running one library sees."""
    for run in runs.values():            # warm-up: compiles, caches, allocator
        for _ in range(3):
            run()
    times = {name: [] for name in runs}
    start = time.perf_counter()
    for i in range(repeats):
        for name, run in runs.items():
            time.sleep(pause_s)
            run()
            for _ in range(per_turn):
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > budget_s:
            break
    return {name: median(ts) for name, ts in times.items()}, len(times[next(iter(times))])


# -- fresh-process workloads -------------------------------------------------------------------------
_FIRST_GRADIENT = """
import time, sys
t = time.perf_counter()
import {lib} as torch
x = torch.randn((5, 5), requires_grad=True)
a = torch.randn((5, 5), requires_grad=True)
((10 - x * a).sum()).backward()
float(x.grad.sum())
print(time.perf_counter() - t)
"""


def _run_python(code, env=None):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cold_start(libs, repeats):
    """Import plus first gradient in a fresh process: nbgrad with an empty and a warm kernel cache."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NBGRAD_CACHE_DIR=cache)
        results["nbgrad_empty_cache"] = _run_python(_FIRST_GRADIENT.format(lib="nbgrad"), env)
        warm = [_run_python(_FIRST_GRADIENT.format(lib="nbgrad"), env) for _ in range(repeats)]
    results["nbgrad"] = median(warm)
    if "torch" in libs:
        results["torch"] = median(_run_python(_FIRST_GRADIENT.format(lib="torch")) for _ in range(repeats))
    return results


_MEMORY = """
import sys, os
sys.path.insert(0, {root!r})
import {lib} as lib
from benchmarks.compare import mlp_training_step
step = mlp_training_step(lib)
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
for _ in range(20):
    step()
after_warmup = rss()
for _ in range(180):
    step()
def peak():                     # this process's own high-water mark (ru_maxrss can carry the parent's)
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))
print(peak(), after_warmup, rss())
"""


def peak_memory(libs):
    """Peak resident memory over 200 MLP steps, and growth after the first 20."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for name in ("nbgrad", "torch"):
        if name in libs:
            out = subprocess.run([sys.executable, "-c", _MEMORY.format(root=root, lib=name)],
                                 capture_output=True, text=True, check=True)
            peak, warm, end = (int(v) for v in out.stdout.split())
            results[name] = {"peak_bytes": peak, "growth_bytes": end - warm}
    return results


# -- reporting ------------------------------------------------------------------------------------
def _fmt_time(s):
    return f"{s * 1e6:9.1f} us" if s < 1e-3 else f"{s * 1e3:9.2f} ms" if s < 1 else f"{s:9.2f} s "


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--out", default=os.path.join(RESULTS, "compare.json"))
    args = parser.parse_args(argv)

    import nbgrad
    libs = {"nbgrad": nbgrad}
    for name in ("torch", "jax"):
        mod = _optional(name)
        if mod is not None:
            libs[name] = mod
    if "torch" in libs:
        libs["torch"].set_num_threads(os.cpu_count())
    if "jax" in libs:
        libs["jax"].config.update("jax_platform_name", "cpu")
    repeats, budget = (3, 2.0) if args.quick else (35, 20.0)
    selected = args.only.split(",") if args.only else list(WORKLOADS) + ["cold_start", "peak_memory"]

    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "versions": {name: getattr(mod, "__version__", "?") for name, mod in libs.items()},
              "workloads": {}}
    peers = ["torch", "jax", "numpy"]
    print(f"{'workload':16} {'nbgrad':>12} " + " ".join(f"{p:>12} {'ratio':>6}" for p in peers) + "  target")
    for name in selected:
        if name in WORKLOADS:
            medians, n = measure_alternating(WORKLOADS[name](libs), repeats, budget)
            entry = {"median_s": medians, "calls": n}
        elif name == "cold_start":
            medians = cold_start(libs, 3 if args.quick else 7)
            entry = {"median_s": medians}
            name = "cold_start_warm_cache"
        elif name == "peak_memory":
            mem = peak_memory(libs)
            entry = {"memory": mem}
            medians = {k: v["peak_bytes"] for k, v in mem.items()}
        else:
            parser.error(f"unknown workload {name}")
        ratios = {p: medians["nbgrad"] / medians[p] for p in peers if p in medians}
        entry["ratio"] = ratios
        entry["target"] = TARGETS.get(name)
        report["workloads"][name] = entry
        fmt = (lambda v: f"{v / 2**20:9.1f} MiB") if name == "peak_memory" else _fmt_time
        cells = " ".join(f"{fmt(medians[p]) if p in medians else '':>12} "
                         f"{ratios[p] if p in ratios else float('nan'):6.2f}" for p in peers)
        target = TARGETS.get(name)
        mark = "" if target is None or "torch" not in ratios else ("ok" if ratios["torch"] <= target else "MISSED")
        print(f"{name:16} {fmt(medians['nbgrad']):>12} {cells}  <= {target} {mark}", flush=True)
        if name == "cold_start_warm_cache":
            print(f"{'  empty cache':16} {_fmt_time(medians['nbgrad_empty_cache']):>12}  (target < 5 s)")
        if name == "peak_memory":
            for lib, m in entry["memory"].items():
                print(f"{'  growth ' + lib:16} {m['growth_bytes'] / 2**20:9.1f} MiB over steps 20-200")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    _plot(report, os.path.splitext(args.out)[0] + ".png")
    print(f"saved {args.out}")


def _plot(report, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n, e in report["workloads"].items() if "torch" in e["ratio"]]
    ratios = [report["workloads"][n]["ratio"]["torch"] for n in names]
    targets = [report["workloads"][n]["target"] or 0 for n in names]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(names, ratios, color=["tab:green" if r <= t else "tab:red" for r, t in zip(ratios, targets)])
    ax.scatter(names, targets, marker="_", s=800, color="black", label="target")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_ylabel("time nbgrad / PyTorch (lower is better)")
    ax.set_title("nbgrad vs PyTorch CPU, medians of alternating runs")
    ax.legend()
    plt.xticks(rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
