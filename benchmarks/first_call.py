"""The first call of a compiled workload (capture, code generation, compile, one iteration), in a
fresh process, with an empty kernel cache and again with the cache the first process left:
nbgrad.compile beside torch.compile.

    python -m benchmarks.first_call [poly_1e6 chain_100 ...] [--libs nbgrad,torch]

issue 12's bars are 1.5 s (empty cache) and 0.2 s (warm cache, new process) per workload. The time
is the first ``run()`` of ``WORKLOADS[name].make(lib, lib.compile)``: what a user waits for at the
first iteration, after imports and the workload's setup. Caches go to a temporary directory
(``NBGRAD_CACHE_DIR`` for nbgrad's generated kernels, ``NUMBA_CACHE_DIR`` for its hand-written
ones, ``TORCHINDUCTOR_CACHE_DIR`` for torch.compile's), so the user's own caches are untouched and
an empty cache is empty for every kernel the iteration runs.
"""
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
import numpy as np
lib_name, name = sys.argv[1], sys.argv[2]
if lib_name == "torch":
    import torch as lib
else:
    import nbgrad as lib
from benchmarks.workloads import WORKLOADS
run = WORKLOADS[name].make(lib, lib.compile)
t0 = time.perf_counter()
run()
first = time.perf_counter() - t0
t0 = time.perf_counter()
run()
print(json.dumps({"first": first, "second": time.perf_counter() - t0}))
"""


def first_call(lib, name, cache):
    env = dict(os.environ, NBGRAD_CACHE_DIR=os.path.join(cache, "nbgrad"), NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
               TORCHINDUCTOR_CACHE_DIR=os.path.join(cache, "inductor"), TRITON_CACHE_DIR=os.path.join(cache, "triton"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", CHILD, lib, name], env=env, cwd=root, capture_output=True,
                         text=True, timeout=1200)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
    libs = ["nbgrad", "torch"]
    names = []
    for a in argv:
        if a.startswith("--libs="):
            libs = a.split("=", 1)[1].split(",")
        else:
            names.append(a)
    names = names or ["poly_1e6", "poly_1e7", "chain_100", "fan_in_chain", "tutorial_5x5", "mlp_plain_ops",
                      "mlp_step", "cross_entropy"]
    print(f"{'workload':16s} " + " ".join(f"{lib + ' empty':>14s} {lib + ' warm':>14s}" for lib in libs))
    for name in names:
        cells = []
        for lib in libs:
            with tempfile.TemporaryDirectory() as cache:
                cold, warm = first_call(lib, name, cache), first_call(lib, name, cache)
            cells += [f"{r['first']:13.2f}s" if "first" in r else f"{r['error'][:14]:>14s}" for r in (cold, warm)]
        print(f"{name:16s} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
