"""``nbgrad.compile`` on 'cuda' tensors, run by ``tests/test_cuda.py`` in a pytest process of
its own with ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported (or, unchanged, on a GPU).

Compiled against eager on the same inputs (values and gradients): the polynomial (one joint
forward-backward kernel with a block reduction), the fan-in chain, a product feeding a fused
group that ends in a reduction (a backward kernel reading the reduction's gradient from the
device), an MLP with cross-entropy (products, softmax and nll through the CUDA target), outputs
that are not a loss. Tiny inputs: the simulator runs each CUDA thread as a Python thread.
"""
import os

import numpy as np
import pytest

import nbgrad
from nbgrad import nn

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
pytestmark = pytest.mark.filterwarnings("error::numba.core.errors.NumbaPerformanceWarning")


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-5)


def _run(fn, values, compiled=None, device="cuda", scale=None):
    """(output, gradients) of ``fn`` on fresh tensors of ``values`` on ``device``, as host arrays."""
    xs = [nbgrad.tensor(v, device=device, requires_grad=True) for v in values]
    out = (compiled or fn)(*xs)
    assert out.device.type == device
    if scale is None:
        w = nbgrad.tensor(np.random.default_rng(1).uniform(0.5, 1.5, tuple(out.shape)), dtype=out.dtype, device=device)
    else:
        w = scale
    (out * w).sum().backward()
    for x in xs:
        assert x.grad.device.type == device
    return out.detach().cpu().numpy(), [x.grad.cpu().numpy() for x in xs]


def _agree(fn, values, scale=None):
    """``fn`` compiled on 'cuda' agrees with ``fn`` eager on the CPU (the capture's call and a
    cached one), and its program is the CUDA one."""
    compiled = nbgrad.compile(fn, fullgraph=True)
    tol = _tol(values[0].dtype)
    eager = _run(fn, values, device="cpu", scale=scale)
    for _ in range(2):
        ours = _run(fn, values, compiled=compiled, scale=scale)
        np.testing.assert_allclose(ours[0], eager[0], **tol)
        for a, b in zip(ours[1], eager[1]):
            np.testing.assert_allclose(a, b, **tol)
    (entry,) = compiled._entries.values()
    assert entry.program.target is nbgrad.ops.targets.target_for("cuda")
    assert "@cuda.jit" in entry.program.source and "@njit" not in entry.program.source
    return entry.program


def poly(x):
    return (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum()


def chain(x):
    y = x
    for _ in range(25):
        y = (y * 1.01 + 0.1).tanh() - x
    return y.sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_polynomial_is_one_joint_kernel(dtype):
    x = np.random.default_rng(0).normal(size=(37,)).astype(dtype)     # several blocks: partial sums
    program = _agree(poly, [x])
    assert program.joint is not None and len(program.units) == 1
    _agree(poly, [x], scale=3.0)               # an incoming gradient other than 1: scaled on the device
    _agree(lambda x: (x * x).mean(), [x[:0]])  # no elements: NaN, as eager


def test_the_fan_in_chain():
    program = _agree(chain, [np.random.default_rng(1).normal(size=(5, 5))])
    assert program.joint is not None


def test_a_product_then_a_fused_group_ending_in_a_reduction():
    """Two units: the product, then one group whose backward kernel takes the reduction's
    incoming gradient as a one-element device array."""
    rng = np.random.default_rng(2)
    program = _agree(lambda a, b: ((a @ b).tanh() * 2 + b.sum()).sum(), [rng.normal(size=(3, 4)),
                                                                        rng.normal(size=(4, 2))])
    assert program.joint is None and any("_[0]" in line for line in program.source.splitlines())


def test_outputs_that_are_not_a_loss_and_broadcast_operands():
    rng = np.random.default_rng(3)
    _agree(lambda a, b: a * b + a.exp(), [rng.normal(size=(4, 3)), rng.normal(size=(3,))])
    _agree(lambda a, b: (a - b) / (1 + b * b), [rng.normal(size=(4, 3)), rng.normal(size=(4, 1))])
    _agree(lambda a: a.sum(1, keepdim=True) * a, [rng.normal(size=(4, 3))])
    _agree(lambda a, b: (a.t() @ b).sigmoid(), [rng.normal(size=(3, 2)), rng.normal(size=(3, 2))])
    # operands broadcast in the middle: copied out to the group's shape on the device first
    _agree(lambda a, b: (a * b).exp(), [rng.normal(size=(2, 1, 3)), rng.normal(size=(1, 2, 1))])


@pytest.mark.parametrize("dtype", [nbgrad.float64, nbgrad.float32])
def test_an_mlp_with_cross_entropy_trains_as_eager(dtype):
    """Linear, ReLU, Linear, cross_entropy compiled on 'cuda': loss and every parameter's
    gradient as eager on the CPU, over two SGD steps (parameters are read afresh each call)."""
    nbgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    twin = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    twin.load_state_dict(model.state_dict())
    twin.to("cuda")
    x, t = nbgrad.randn(5, 4, dtype=dtype), nbgrad.tensor([0, 2, 1, 1, 0])
    td = t.cuda()                              # a class-index target is read, not passed (capture lifts it)
    compiled = nbgrad.compile(lambda x: nn.functional.cross_entropy(twin(x), td), fullgraph=True)
    opts = nbgrad.optim.SGD(model.parameters(), lr=0.1), nbgrad.optim.SGD(twin.parameters(), lr=0.1)
    tol = _tol(np.float64 if dtype == nbgrad.float64 else np.float32)
    for _ in range(2):
        for o in opts:
            o.zero_grad()
        eager = nn.functional.cross_entropy(model(x), t)
        ours = compiled(x.cuda())
        assert ours.is_cuda and type(ours.grad_fn).__name__ == "CompiledFunctionBackward"
        eager.backward()
        ours.backward()
        np.testing.assert_allclose(ours.item(), eager.item(), **tol)
        for p, q in zip(model.parameters(), twin.parameters()):
            assert q.grad.is_cuda
            np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), **tol)
        for o in opts:
            o.step()
    (entry,) = compiled._entries.values()
    assert "@cuda.jit" in entry.program.source


def test_the_device_is_part_of_the_signature():
    """One compiled function called on the CPU and on 'cuda': two captures, two programs."""
    compiled = nbgrad.compile(poly, fullgraph=True)
    x = nbgrad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    xd = x.detach().cuda().requires_grad_()
    compiled(x).backward()
    compiled(xd).backward()
    assert xd.grad.is_cuda and not x.grad.is_cuda
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy())
    targets = {e.program.target.device_type for e in compiled._entries.values()}
    assert targets == {"cpu", "cuda"}


def test_tensors_on_two_devices_break_the_graph_and_eager_raises_pytorchs_error():
    x, y = nbgrad.ones(3, device="cuda"), nbgrad.ones(3)
    with pytest.raises(nbgrad.compiler.GraphBreak, match="two devices"):
        nbgrad.compile(lambda a, b: a * b, fullgraph=True)(x, y)
    with pytest.warns(UserWarning, match="graph break"):
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            nbgrad.compile(lambda a, b: a * b)(x, y)


def test_proxies_carry_the_device():
    seen = []

    def f(x):
        seen.append(x.device)
        return x * 2
    nbgrad.compile(f, fullgraph=True)(nbgrad.ones(2, device="cuda"))
    assert seen == [nbgrad.device("cuda", 0)]


def test_several_outputs_retain_graph_and_no_grad():
    rng = np.random.default_rng(4)
    f = nbgrad.compile(lambda a, b: (a * b, (a * b).sum() + b.sum()), fullgraph=True)
    a = nbgrad.tensor(rng.normal(size=(3,)), device="cuda")
    b = nbgrad.tensor(rng.normal(size=(3,)), requires_grad=True, device="cuda")
    prod, total = f(a, b)
    total.backward(retain_graph=True)
    np.testing.assert_allclose(b.grad.cpu().numpy(), a.cpu().numpy() + 1)
    b.grad = None
    (prod * 3).sum().backward()                # the other output alone: the first gets zeros
    np.testing.assert_allclose(b.grad.cpu().numpy(), 3 * a.cpu().numpy())
    x = nbgrad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    c = nbgrad.compile(poly, fullgraph=True)
    loss = c(x)
    loss.backward(retain_graph=True)           # the joint pass runs again for the second backward
    loss.backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), [44.0, 90.0])
    with nbgrad.no_grad():
        out = c(x)
    assert out.is_cuda and out.grad_fn is None and out.item() == 79.0


@pytest.mark.filterwarnings("error::UserWarning")          # a graph break (eager fallback) fails it
def test_the_gpu_benchmark_runs_compiled(tmp_path):
    """``benchmarks/gpu.py --compiled`` end to end at tiny sizes (``--tiny --quick``), so that a GPU
    session finds nbgrad.compile's rows working."""
    import json
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    from benchmarks import gpu
    out = tmp_path / "gpu.json"
    try:
        assert gpu.main(["--tiny", "--quick", "--compiled", "--only", "poly_1e6,matmul_4096", "--out", str(out)]) == 0
    finally:
        gpu.SIZES.update(gpu.SIZES_FULL)
    report = json.loads(out.read_text())
    assert report["compiled"] and isinstance(report["results"]["poly_1e6"]["nbgrad"], float), report
    assert "matmul_4096" not in report["results"]            # not a compilable workload: skipped
