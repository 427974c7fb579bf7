"""Compile every kernel of the CUDA target to PTX for sm_90 with numba-cuda's NVVM: no GPU needed.

    python tests/cuda_ptx_check.py          # needs numba-cuda (nbgrad[cuda]); prints what fails, exits 1 if any

Each op-table kernel (forward and fused gradients; contiguous and strided; float32 and float64),
each accumulation of the table, each hand-written kernel, and the kernels ``nbgrad.compile``
generates for its workloads (polynomial, chain, MLP with cross-entropy...), with the argument
types the CUDA target launches them with. The simulator runs kernels as Python and so cannot tell whether they
compile for a device; this does (it cannot tell whether they are right: the simulator checks that).
``tests/test_cuda.py`` runs it where numba-cuda is installed.
"""
import sys

try:
    import _numba_cuda_redirector  # noqa: F401  (what numba-cuda's .pth does in site-packages)
except ImportError:
    pass
import numba.cuda.dispatcher as _disp
from numba import boolean, cuda, float32, float64, int64, types

if not hasattr(_disp, "get_current_device"):
    sys.exit("numba-cuda is not installed: `from numba import cuda` is numba's own")


class _Device:
    """Device functions ask the current device for its compute capability: an H100's, here."""
    compute_capability = (9, 0)


_disp.get_current_device = lambda: _Device()

from nbgrad.ops.table import ACCUMULATIONS  # noqa: E402
from nbgrad.ops.optim import RULES, hyper_count  # noqa: E402
from nbgrad.ops.targets import cuda_kernels as hand, cuda_nn, cuda_nonzero, cuda_optim, cuda_prod  # noqa: E402
from nbgrad.ops.targets import cuda_count, cuda_scan, cuda_sort  # noqa: E402
from nbgrad.ops.targets.cuda_codegen import KERNELS, accumulation  # noqa: E402
from cuda_ptx_layers import layer_jobs  # noqa: E402  (conv, pool, norm, embedding)

A = lambda t: types.Array(t, 1, "C")  # noqa: E731
T = lambda k: types.UniTuple(int64, k)  # noqa: E731
jobs = []
for name in sorted(KERNELS):
    k = KERNELS[name]
    n = len(k.args)
    for dt in (int64,) if name.startswith("bitwise") else (float32, float64):     # bitwise ops take integers
        jobs.append((f"{name} {dt} contiguous", k.kernel("c" * n), (int64, A(dt), int64) + (A(dt), int64) * n))
        jobs.append((f"{name} {dt} strided", k.kernel("strided"),
                     (int64, T(2), A(dt), int64, T(2)) + (A(dt), int64, T(2)) * n))
for name in ("copy", "mul", "sub", "clamp", "where"):            # numbers passed by value: one per position
    k = KERNELS[name]
    n = len(k.args)
    for dt in (float32, float64):
        for at in range(n):
            pat = "c" * at + "v" + "c" * (n - at - 1)
            vals = [(dt,) if c == "v" else (A(dt), int64) for c in pat]
            jobs.append((f"{name} {dt} {pat}", k.kernel(pat), (int64, A(dt), int64) + sum(vals, ())))
            spat = pat.replace("c", "a")
            svals = [(dt,) if c == "v" else (A(dt), int64, T(2)) for c in spat]
            jobs.append((f"{name} {dt} strided_{spat}", k.kernel("strided_" + spat),
                         (int64, T(2), A(dt), int64, T(2)) + sum(svals, ())))
for name in ACCUMULATIONS:
    if ACCUMULATIONS[name].kernel:
        continue
    mod = accumulation(name, hand.THREADS)
    for dt, acc, (first, combine) in ((float32, float64, (mod.float_first, mod.float_combine)),
                                      (float64, float64, (mod.float_first, mod.float_combine)),
                                      (int64, int64, (mod.int_first, mod.int_combine))):
        sig = (A(dt), int64, T(2), T(2), T(1), T(1), int64, int64, A(dt), int64, acc, A(float64), A(acc))
        jobs.append((f"acc {name} {dt}", first, sig))
        jobs.append((f"combine {name} {dt}", combine, (A(acc), int64, A(dt), int64, acc, A(float64))))
for dt in (float32, float64, int64):
    fl = dt is not int64
    jobs.append((f"extreme {dt}", hand.extreme_kernel(fl), (A(dt), int64, T(2), T(2), T(1), T(1), int64, boolean,
                                                            A(dt), A(int64))))
    jobs.append((f"matmul {dt}", hand.matmul_kernel(fl), (A(dt), int64, T(3), A(dt), int64, T(3), A(dt), int64, T(3),
                                                          int64, int64, int64)))
    jobs.append((f"fill {dt}", hand.fill_kernel, (A(dt), int64, dt)))
    jobs.append((f"gather {dt}", hand.gather_kernel, (A(dt), A(dt), int64, T(1), T(1), A(int64), T(2), T(2), int64,
                                                      int64)))
    jobs.append((f"scatter_add {dt}", hand.scatter_add_kernel, (A(dt), int64, A(dt), T(1), T(1), A(int64), T(2), T(2),
                                                                int64, int64)))
    jobs.append((f"scatter {dt}", hand.scatter_kernel, (A(dt), int64, A(dt), T(1), T(1), A(int64), T(2), T(2), int64,
                                                        int64)))
    jobs.append((f"gather_dim {dt}", hand.gather_dim_kernel, (A(dt), int64, T(2), A(dt), int64, T(2), A(int64), T(2),
                                                              int64, int64, int64)))
    jobs.append((f"scatter_dim {dt}", hand.scatter_dim_kernel, (A(dt), int64, T(2), A(int64), T(2), T(2), int64, A(dt),
                                                                int64, T(2), int64, int64, int64)))
    jobs.append((f"index_backward {dt}", hand.index_backward_kernel, (A(dt), A(int64), A(dt), int64, int64,
                                                                      A(int64))))
jobs.append(("check_index", hand.check_index_kernel, (A(int64), int64, A(int64))))
for dt in (float32, float64):
    jobs.append((f"softmax {dt}", cuda_nn.softmax_kernel, (A(dt), int64, A(dt), int64, int64, boolean)))
    jobs.append((f"softmax_backward {dt}", cuda_nn.softmax_backward_kernel, (A(dt), int64, A(dt), A(dt), int64, int64,
                                                                            boolean)))
    jobs.append((f"nll_forward {dt}", cuda_nn.nll_forward_kernel, (A(dt), int64, T(4), T(4), A(int64), A(dt), boolean,
                                                                   A(dt), A(dt), A(int64), int64)))
    jobs.append((f"nll_backward {dt}", cuda_nn.nll_backward_kernel, (A(dt), T(4), A(int64), A(dt), boolean, A(dt),
                                                                     boolean, A(int64), int64)))
for dt in (float32, float64, int64, boolean):
    jobs.append((f"nonzero count {dt}", cuda_nonzero.count_kernel, (A(dt), int64, T(2), T(2), int64, A(int64))))
    jobs.append((f"nonzero fill {dt}", cuda_nonzero.fill_kernel, (A(dt), int64, T(2), T(2), int64, A(int64),
                                                                   A(int64))))
jobs.append(("nonzero scan", cuda_nonzero.scan_kernel, (A(int64), int64, A(int64))))
for dt in (float32, float64):
    jobs.append((f"prod_backward {dt}", cuda_prod.prod_backward_kernel, (A(dt), int64, T(1), T(1), T(1), T(1), int64,
                                                                        A(dt), A(dt), T(1), T(1), int64)))
for dt in (float32, float64, int64):
    fl = dt is not int64
    jobs.append((f"scan {dt}", cuda_scan._SCAN[fl], (A(dt), int64, int64, int64, int64, A(dt), int64, int64, int64,
                                                     int64, int64, int64, int64, boolean)))
    jobs.append((f"cumextreme {dt}", cuda_scan._cumextreme_kernel, (A(dt), int64, int64, int64, A(dt), A(int64), int64,
                                                                    int64, boolean)))
    jobs.append((f"sort runs {dt}", cuda_sort._runs_kernel, (A(dt), int64, int64, int64, A(int64), int64, int64,
                                                             boolean)))
    jobs.append((f"sort merge {dt}", cuda_sort._merge_kernel, (A(dt), int64, int64, int64, A(int64), A(int64), int64,
                                                               int64, int64, boolean)))
    jobs.append((f"sort take {dt}", cuda_sort._take_kernel, (A(dt), int64, int64, int64, A(int64), A(dt), int64,
                                                             int64)))
    jobs.append((f"unique_runs {dt}", cuda_sort._unique_runs_kernel, (A(dt), A(int64), int64, A(dt), A(int64),
                                                                      A(int64), A(int64))))
    jobs.append((f"mode {dt}", cuda_sort._mode_kernel, (A(dt), A(int64), int64, int64, A(dt), A(int64))))
    jobs.append((f"unique_slices {dt}", cuda_sort._unique_slices_kernel, (A(dt), int64, int64, boolean)
                 + (A(int64),) * 6))
    if fl:
        jobs.append((f"cumprod_backward {dt}", cuda_scan._cumprod_backward_kernel,
                     (A(dt), int64, T(2), A(dt), int64, T(2), A(dt), int64, T(2), A(dt), int64, int64)))
        jobs.append((f"histc {dt}", cuda_count._histc_kernel, (A(dt), int64, A(dt), int64, float64, float64)))
    jobs.append((f"bincount {dt}", cuda_count._bincount_kernel, (A(int64), int64, A(dt), boolean, A(dt), int64)))
jobs.append(("max_value", cuda_count._max_value_kernel, (A(int64), int64, A(int64))))
for family in RULES:
    for dt in (float32, float64):
        jobs.append((f"optim {family} {dt}", cuda_optim.kernel(family),
                     (int64,) + (A(dt),) * (2 + len(RULES[family].states)) + (types.UniTuple(dt, hyper_count(family)),)))
jobs += layer_jobs()


# -- nbgrad.compile's generated kernels: the workloads' programs, emitted for CUDA ---------------------------
import nbgrad  # noqa: E402
from nbgrad import nn  # noqa: E402
from nbgrad.compiler.capture import capture  # noqa: E402
from nbgrad.compiler.codegen import Program  # noqa: E402
from nbgrad.compiler.cuda_codegen import RUNNER  # noqa: E402
from nbgrad.ops._cache import load_module  # noqa: E402
from numba import from_dtype  # noqa: E402


def _compiled_jobs(label, fn, *tensors):
    """The CUDA kernels nbgrad.compile generates for ``fn`` on tensors like ``tensors``: captured on
    CPU tensors (no device needed), emitted by the CUDA runner as for 'cuda' tensors, with the
    argument types it launches them with (a reduction's incoming gradient: a one-element array)."""
    program = Program(capture(fn, tensors, {}))
    program.target, program.runner = "cuda", RUNNER
    module = load_module(RUNNER.stem, program._source())
    for _, fwd, bwd in program.kernels.values():
        for k in (fwd, bwd):
            if k is None:
                continue
            sig = [A(from_dtype((program.graph.nodes[key] if kind == "gin" else key).dtype.numpy))
                   for kind, key, _ in k.params]
            if k.reduces:
                sig.append(A(float64))
            jobs.append((f"compiled {label} {k.name}", getattr(module, f"{k.name}_c"), tuple(sig)))


def _chain(x):
    y = x
    for _ in range(25):
        y = (y * 1.01 + 0.1).tanh() - x
    return y.sum()


for dtype in (nbgrad.float32, nbgrad.float64):
    def leaf(*shape):
        return nbgrad.randn(*shape, dtype=dtype, requires_grad=True)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    target = nbgrad.tensor([0, 2, 1, 1, 0])
    _compiled_jobs(f"poly {dtype}", lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum(), leaf(1000))
    _compiled_jobs(f"chain {dtype}", _chain, leaf(5, 5))
    _compiled_jobs(f"mlp+cross_entropy {dtype}", lambda x: nn.functional.cross_entropy(mlp(x), target), leaf(5, 4))
    _compiled_jobs(f"matmul then a reduced group {dtype}", lambda a, b: ((a @ b).tanh() * 2 + b.sum()).sum(),
                   leaf(3, 4), leaf(4, 2))
    _compiled_jobs(f"broadcast outputs {dtype}", lambda a, b: (a - b) / (1 + b * b) + a.sum(1, keepdim=True),
                   leaf(4, 3), leaf(4, 1))

failed = 0
for label, disp, sig in jobs:
    try:
        cuda.compile_ptx(disp.py_func, sig, cc=(9, 0))
    except Exception as e:             # noqa: BLE001  every failure is listed
        failed += 1
        print(label, type(e).__name__, " ".join(str(e).split())[:300])
print(f"compiled {len(jobs) - failed} of {len(jobs)} kernels to PTX")
sys.exit(1 if failed else 0)
