"""nbgrad's CUDA target against PyTorch CUDA, on a machine with a GPU (not run in CI).

    python -m benchmarks.gpu                 # everything; results in benchmarks/results/gpu.json
    python -m benchmarks.gpu --quick --only poly_1e6,matmul_4096
    NUMBA_ENABLE_CUDASIM=1 python -m benchmarks.gpu --tiny --quick     # the script itself, in the simulator
    python -m benchmarks.gpu --compiled      # nbgrad.compile's (and torch.compile's) forward of each workload

The workloads of ``benchmarks/compare.py`` (the same computations, built from the helpers of
``benchmarks/workloads.py``) with their tensors and models on 'cuda', plus the two figures the
CUDA issue asks for: elementwise forward+backward bandwidth as a fraction of the card's peak
(goal >= 70%), and matrix-product TFLOP/s next to PyTorch's cuBLAS. Every timed call ends with a
device synchronize. A workload that reaches a kernel the CUDA target lacks is reported as
"not implemented for cuda" (the target raises rather than running it on the CPU).
"""
import argparse
import json
import os
import sys
import time
from statistics import median

import numpy as np

from .workloads import _chain_100, _data, _fan_in, _graph, _mlp_loss, _poly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "gpu.json")
DEV = "cuda"
# the sizes of compare.py's workloads; ``--tiny`` shrinks them so that the script itself can be
# run end to end under the simulator (tests/cuda_sim_checks.py does)
SIZES = dict(poly_small=10 ** 6, poly_big=10 ** 7, batch=256, features=784, hidden=256, classes=10,
             logits=(4096, 1000), bandwidth=1 << 27, matmul=4096, chain=(5, 5), cnn=(64, 28))
SIZES_FULL = dict(SIZES)
TINY = dict(poly_small=64, poly_big=128, batch=4, features=6, hidden=5, classes=3, logits=(4, 5), bandwidth=64,
            matmul=8, chain=(2, 2), cnn=(2, 10))


def _mlp_data(tensor):
    """Inputs, class targets and one-hot targets (workloads.py's, at SIZES)."""
    x = _data(3, (SIZES["batch"], SIZES["features"]))
    y = np.random.default_rng(0).integers(0, SIZES["classes"], SIZES["batch"])
    return tensor(x), tensor(y), tensor(np.eye(SIZES["classes"], dtype=np.float32)[y])


def _mlp_params():
    f, h, c = SIZES["features"], SIZES["hidden"], SIZES["classes"]
    return [_data(4, (f, h), 0.05), np.zeros(h, np.float32), _data(5, (h, c), 0.05), np.zeros(c, np.float32)]


def _mlp(nn):
    return nn.Sequential(nn.Linear(SIZES["features"], SIZES["hidden"]), nn.ReLU(),
                         nn.Linear(SIZES["hidden"], SIZES["classes"])).to(DEV)


# -- the libraries ------------------------------------------------------------------------------------
def libraries():
    import nbgrad
    from nbgrad.ops.targets import target_for
    cuda = target_for("cuda")                  # raises, with the reason, where there is no GPU
    libs = {"nbgrad": (nbgrad, cuda.synchronize)}
    try:
        import torch
        if torch.cuda.is_available():
            libs["torch"] = (torch, torch.cuda.synchronize)
    except ImportError:
        pass
    return libs


# -- workloads: make(lib) -> one iteration; make(lib, compile=lib.compile): its forward compiled -------------
def _eager(fn):
    return fn


def _poly_make(size):
    def make(lib, compile=_eager):
        x = lib.tensor(_data(0, SIZES[size]), device=DEV, requires_grad=True)
        f = compile(lambda x: _poly(x).sum())

        def run():
            f(x).backward()
            x.grad = None
        return run
    return make


def _tutorial_make(lib):
    def run():
        _graph(*(lib.randn(SIZES["chain"], device=DEV, requires_grad=True) for _ in range(5))).backward()
    return run


def _chain_make(body):
    def make(lib, compile=_eager):
        x = lib.tensor(_data(1, SIZES["chain"]), device=DEV, requires_grad=True)
        f = compile(lambda x: body(x, lib.Tensor.tanh).sum())

        def run():
            f(x).backward()
            x.grad = None
        return run
    return make


def _mlp_step_make(lib, compile=_eager):
    nn = lib.nn
    lib.manual_seed(0)
    model = _mlp(nn)
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x, y, _ = _mlp_data(lambda a: lib.tensor(a, device=DEV))
    loss = compile(lambda x: nn.functional.cross_entropy(model(x), y))

    def run():
        opt.zero_grad()
        loss(x).backward()
        opt.step()
    return run


def _mlp_mse_make(lib, compile=_eager):
    """The MLP step with an MSE loss on one-hot targets (no softmax kernel needed)."""
    nn = lib.nn
    lib.manual_seed(0)
    model = _mlp(nn)
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x, _, onehot = _mlp_data(lambda a: lib.tensor(a, device=DEV))
    loss = compile(lambda x: ((model(x) - onehot) ** 2).mean())

    def run():
        opt.zero_grad()
        loss(x).backward()
        opt.step()
    return run


def _mlp_plain_make(lib):
    x, _, onehot = _mlp_data(lambda a: lib.tensor(a, device=DEV))
    params = [lib.tensor(p, device=DEV, requires_grad=True) for p in _mlp_params()]

    def run():
        _mlp_loss(lib.log_softmax, lib.relu, x, onehot, *params).backward()
        with lib.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None
    return run


def _cross_entropy_make(lib, compile=_eager):
    n, c = SIZES["logits"]
    z = lib.tensor(_data(2, (n, c)), device=DEV, requires_grad=True)
    t = lib.tensor(np.random.default_rng(2).integers(0, c, n), device=DEV)
    loss = compile(lambda z: lib.nn.functional.cross_entropy(z, t))

    def run():
        loss(z).backward()
        z.grad = None
    return run


def _cnn_step_make(lib):
    """workloads.py's cnn_step (conv, ReLU, max pool twice, linear; SGD) on 'cuda'; ``SIZES["cnn"]``
    is (batch, image side), the linear layer's input follows the side."""
    nn = lib.nn
    lib.manual_seed(0)
    n, side = SIZES["cnn"]
    s = ((side - 2) // 2 - 2) // 2
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * s * s, 10)).to(DEV)
    opt = lib.optim.SGD(model.parameters(), lr=0.01)
    x = lib.tensor(_data(6, (n, 1, side, side)), device=DEV)
    y = lib.tensor(np.random.default_rng(6).integers(0, 10, n), device=DEV)

    def run():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return run


def _bandwidth_make():
    """``(a * b).backward(g)``: the forward reads a, b and writes y; the two fused gradient
    kernels read g and b, g and a, and write a gradient each: 9 passes over n float32 values.
    (The engine's copies of the gradients into ``.grad`` are extra traffic, not counted.)"""
    def make(lib):
        n = SIZES["bandwidth"]
        a = lib.tensor(_data(8, n), device=DEV, requires_grad=True)
        b = lib.tensor(_data(9, n), device=DEV, requires_grad=True)
        g = lib.ones(n, device=DEV)

        def run():
            (a * b).backward(g)
            a.grad = b.grad = None
        return run
    return make


BANDWIDTH_BYTES = lambda n: 4 * n * (3 + 6)          # noqa: E731  float32: forward 3 passes, backward 6


def _matmul_make():
    def make(lib):
        n = SIZES["matmul"]
        a = lib.tensor(_data(10, (n, n)), device=DEV)
        b = lib.tensor(_data(11, (n, n)), device=DEV)
        return lambda: a @ b
    return make


WORKLOADS = {
    "poly_1e6": _poly_make("poly_small"),
    "poly_1e7": _poly_make("poly_big"),
    "tutorial_5x5": _tutorial_make,
    "chain_100": _chain_make(_chain_100),
    "fan_in_chain": _chain_make(_fan_in),
    "mlp_step": _mlp_step_make,
    "mlp_mse_step": _mlp_mse_make,
    "mlp_plain_ops": _mlp_plain_make,
    "cross_entropy": _cross_entropy_make,
    "cnn_step": _cnn_step_make,
    "bandwidth_2e27": _bandwidth_make(),
    "matmul_4096": _matmul_make(),
}


# the workloads whose make takes ``compile`` (their forward is one function of the timed tensor)
COMPILABLE = ["poly_1e6", "poly_1e7", "chain_100", "fan_in_chain", "mlp_step", "mlp_mse_step", "cross_entropy"]


def peak_bandwidth():
    """The card's theoretical memory bandwidth in GB/s, from numba's device attributes."""
    from numba import cuda
    try:
        d = cuda.get_current_device()
        return 2 * d.MEMORY_CLOCK_RATE * 1e3 * d.GLOBAL_MEMORY_BUS_WIDTH / 8 / 1e9
    except Exception:
        return None


def _median_time(run, sync, repeat):
    for _ in range(2):             # compiles, allocator
        run()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--quick", action="store_true", help="3 timed calls instead of 10")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: to try the script under the simulator")
    parser.add_argument("--compiled", action="store_true",
                        help="each library compiles the workload's forward (nbgrad.compile, torch.compile)")
    args = parser.parse_args(argv)
    if args.tiny:
        SIZES.update(TINY)
    names = args.only.split(",") if args.only else list(COMPILABLE if args.compiled else WORKLOADS)
    if args.compiled and set(names) - set(COMPILABLE):
        print(f"# --compiled times only {', '.join(COMPILABLE)}; skipping {', '.join(sorted(set(names) - set(COMPILABLE)))}")
        names = [n for n in names if n in COMPILABLE]
    libs = libraries()
    from nbgrad.ops.targets import target_for
    cuda = target_for("cuda")
    info = {"device": cuda.device_name(), "implementation": cuda.implementation(), "peak_gbs": peak_bandwidth()}
    print(f"# {info['device']} ({info['implementation']}), peak memory bandwidth {info['peak_gbs']} GB/s")
    rows = {}
    for name in names:
        row = rows[name] = {}
        for lib_name, (lib, sync) in libs.items():
            try:
                make = WORKLOADS[name]
                run = make(lib, compile=lib.compile) if args.compiled else make(lib)
                row[lib_name] = _median_time(run, sync, 3 if args.quick else 10)
            except NotImplementedError as error:
                row[lib_name] = f"not implemented for cuda: {error}"
            except Exception as error:          # noqa: BLE001  reported, the rest still runs
                row[lib_name] = f"{type(error).__name__}: {error}"
        extra = ""
        if name.startswith("bandwidth") and isinstance(row.get("nbgrad"), float):
            gbs = BANDWIDTH_BYTES(SIZES["bandwidth"]) / row["nbgrad"] / 1e9
            row["nbgrad_gbs"] = gbs
            if info["peak_gbs"]:
                row["fraction_of_peak"] = gbs / info["peak_gbs"]
                extra = f"  {gbs:.0f} GB/s = {100 * gbs / info['peak_gbs']:.0f}% of peak (goal >= 70%)"
        if name.startswith("matmul"):
            for lib_name in libs:
                if isinstance(row.get(lib_name), float):
                    row[lib_name + "_tflops"] = 2 * SIZES["matmul"] ** 3 / row[lib_name] / 1e12
            extra = "  " + ", ".join(f"{k}: {v:.1f} TFLOP/s" for k, v in row.items() if k.endswith("_tflops"))
        timed = all(isinstance(row.get(k), float) for k in ("nbgrad", "torch"))
        ratio = row["nbgrad"] / row["torch"] if timed else None
        cells = "  ".join(f"{k}={v * 1e3:.3f} ms" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
                          if k in libs)
        print(f"{name:16s} {cells}" + (f"  ratio {ratio:.2f}" if ratio else "") + extra, flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"info": info, "compiled": args.compiled, "results": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
