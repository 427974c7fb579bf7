"""One optimizer step over the parameters of an MLP 784-256-10 (float32, about 200k values,
gradients already there): the asv suite times nbgrad's; run as a module, it prints each
optimizer's median and fastest step time beside PyTorch's, each library alone in its own
process (on a loaded machine the fastest is the steadier figure).

    python -m benchmarks.bench_optim [--steps 300]
"""
import argparse
import json
import subprocess
import sys
import time

import numpy as np

from . import Steady

OPTIMIZERS = {"SGD": dict(lr=0.01, momentum=0.9), "Adam": dict(lr=1e-3), "AdamW": dict(lr=1e-3, amsgrad=True),
              "RMSprop": dict(lr=1e-3, momentum=0.9, centered=True), "Adagrad": dict(lr=0.01),
              "Adadelta": dict(), "Adamax": dict(), "NAdam": dict(), "RAdam": dict()}


def make_step(lib, name):
    """A closure doing one ``step()``, with the gradients set once (a step leaves them alone)."""
    model = lib.nn.Sequential(lib.nn.Linear(784, 256), lib.nn.ReLU(), lib.nn.Linear(256, 10))
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.grad = lib.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 1e-3)
    opt = getattr(lib.optim, name)(model.parameters(), **OPTIMIZERS[name])
    return opt.step


class OptimizerStep(Steady):
    params = [list(OPTIMIZERS)]
    param_names = ["optimizer"]

    def build(self, name):
        import nbgrad
        self.step = make_step(nbgrad, name)
        self.step()

    def time_step(self, name):
        self.step()


def median_us(lib_name, steps):
    lib = __import__(lib_name)
    out = {}
    for name in OPTIMIZERS:
        step = make_step(lib, name)
        for _ in range(20):
            step()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        out[name] = [float(np.median(times) * 1e6), float(np.min(times) * 1e6)]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lib", help=argparse.SUPPRESS)           # the child process's side
    args = parser.parse_args(argv)
    if args.lib:
        print(json.dumps(median_us(args.lib, args.steps)))
        return
    rows = {lib: json.loads(subprocess.run([sys.executable, "-m", "benchmarks.bench_optim", "--lib", lib, "--steps",
                                            str(args.steps)], capture_output=True, text=True, check=True).stdout)
            for lib in ("nbgrad", "torch")}
    print(f"{'step (us)':<12}{'nbgrad median':>15}{'torch median':>14}{'ratio':>7}{'nbgrad min':>12}"
          f"{'torch min':>11}{'ratio':>7}")
    for name in OPTIMIZERS:
        (a, a_min), (b, b_min) = rows["nbgrad"][name], rows["torch"][name]
        print(f"{name:<12}{a:>15.0f}{b:>14.0f}{a / b:>7.2f}{a_min:>12.0f}{b_min:>11.0f}{a_min / b_min:>7.2f}")


if __name__ == "__main__":
    main()
