"""Where the MLP step's time goes, phase by phase, for nbgrad and for PyTorch, each alone in
its own process (no other library's threads on the cores). The comparison's MLP workload
is the one target nbgrad misses; this shows which phases make the gap.

    python -m benchmarks.mlp_phases [--steps 300]
"""
import argparse
import json
import subprocess
import sys
import time

import numpy as np

PHASES = ("zero_grad+linear 1", "relu", "linear 2", "cross-entropy", "backward", "SGD step", "whole step")


def phases(lib_name, steps):
    """Median microseconds of each phase of ``steps`` training steps (after 20 untimed)."""
    lib = __import__(lib_name)
    nn = lib.nn
    lib.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((256, 784)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 256))
    times = []
    for i in range(20 + steps):
        t = [time.perf_counter()]
        opt.zero_grad()
        h = model[0](x)
        t.append(time.perf_counter())
        h = model[1](h)
        t.append(time.perf_counter())
        h = model[2](h)
        t.append(time.perf_counter())
        loss = nn.functional.cross_entropy(h, y)
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        if i >= 20:
            times.append(np.diff(t).tolist() + [t[-1] - t[0]])
    return (np.median(np.array(times), axis=0) * 1e6).tolist()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lib", help=argparse.SUPPRESS)           # the child process's side
    args = parser.parse_args(argv)
    if args.lib:
        print(json.dumps(phases(args.lib, args.steps)))
        return
    rows = {}
    for lib in ("nbgrad", "torch"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.mlp_phases", "--lib", lib, "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        rows[lib] = json.loads(out.stdout)
    print(f"{'phase (median us)':<20}{'nbgrad':>10}{'torch':>10}{'ratio':>8}")
    for k, name in enumerate(PHASES):
        a, b = rows["nbgrad"][k], rows["torch"][k]
        print(f"{name:<20}{a:>10.0f}{b:>10.0f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
