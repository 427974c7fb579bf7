"""The CUDA target's checks, run by ``tests/test_cuda.py`` in a pytest process of their own
with ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported (or, unchanged, on a real GPU).

Tiny inputs: the simulator runs every CUDA thread as a Python thread. Every kernel of the op
table (each op's forward and each fused gradient) is compared with the CPU's on the same
inputs, in both launch paths (contiguous and strided); then the Tensor layer on 'cuda':
forward and backward of table ops with broadcasting and a transposed operand, sum/mean,
matmul, an MLP training step, moves between devices and the device-mixing error.
"""
import os
import pathlib

import numpy as np
import pytest

import nbgrad
from nbgrad import nn
from nbgrad.ops.elementwise import OPS
from nbgrad.ops.targets import target_for

CUDA = target_for("cuda")
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
# On a GPU, a host array given to a kernel is copied at every launch and numba warns: an error
# here. (In the simulator host arrays cost nothing and nothing warns.)
pytestmark = pytest.mark.filterwarnings("error::numba.core.errors.NumbaPerformanceWarning")


def _inputs(n_operands, shape, dtype, seed, low=0.2):
    """Operands in (low, low + 0.7): (0.2, 0.9) is in every table op's domain but acosh's.
    (The simulator calls Python's ``math`` functions, which raise outside the domain where a
    GPU's return NaN.)"""
    rng = np.random.default_rng(seed)
    return [rng.uniform(low, low + 0.7, shape).astype(dtype) for _ in range(n_operands)]


def _compare(cpu, dev, dtype):
    tol = dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(CUDA.to_host(dev), cpu, equal_nan=True, **tol)


# -- every kernel of the op table ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPS))
def test_table_kernel_matches_the_cpu(name):
    """Forward and fused-gradient kernels alike: contiguous operands (the grid-stride kernel),
    then a transposed output and operand with a broadcast row (the strided kernel)."""
    n = len(OPS[name].args)
    dtype = np.int64 if name.startswith("bitwise") else np.float64       # bitwise ops take integers
    xs = _inputs(n, (2, 3), np.float64, seed=len(name), low=1.2 if name.startswith("acosh") else 0.2)
    if dtype is np.int64:
        xs = [(x * 100).astype(dtype) for x in xs]
    cpu = np.empty((2, 3), dtype)
    OPS[name](cpu, *xs)
    dev = CUDA.empty((2, 3), dtype)
    CUDA.run(name, dev, *(CUDA.asarray(x) for x in xs))
    _compare(cpu, dev, np.float64)
    # strided: a transposed output, a transposed first operand, the others one broadcast row
    cpu_t = np.empty((3, 2), dtype).T
    host = [xs[0].T.copy().T] + [x[:1] for x in xs[1:]]
    OPS[name](cpu_t, *host)
    dev_t = CUDA.permute(CUDA.empty((3, 2), dtype))
    dev_ops = [CUDA.permute(CUDA.asarray(xs[0].T.copy()))] + [CUDA.asarray(x[:1]) for x in xs[1:]]
    CUDA.run(name, dev_t, *dev_ops)
    _compare(cpu_t, dev_t, np.float64)


@pytest.mark.parametrize("name", ["mul", "tanh", "sigmoid", "exp", "div_db", "pow"])
def test_float32_kernels(name):
    n = len(OPS[name].args)
    xs = _inputs(n, (5,), np.float32, seed=1)
    cpu = np.empty(5, np.float32)
    OPS[name](cpu, *xs)
    dev = CUDA.empty((5,), np.float32)
    CUDA.run(name, dev, *(CUDA.asarray(x) for x in xs))
    _compare(cpu, dev, np.float32)


# -- the Tensor layer on 'cuda' ---------------------------------------------------------------------
def _pair(shape, seed, transposed=False):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 0.9, shape[::-1] if transposed else shape)
    cpu = nbgrad.tensor(a, dtype=nbgrad.float64)
    if transposed:
        cpu = cpu.t()
    dev = cpu.to("cuda")
    return cpu.detach().requires_grad_(), dev.detach().requires_grad_()


OPS_ON_TENSORS = {
    "mul": lambda a, b: a * b, "div": lambda a, b: a / b, "sub": lambda a, b: a - b,
    "pow": lambda a, b: a ** b, "maximum": nbgrad.maximum, "atan2": nbgrad.atan2,
    "tanh": lambda a, b: a.tanh() * b, "sigmoid": lambda a, b: a.sigmoid() + b,
    "relu": lambda a, b: (a - 0.5).relu() * b, "log": lambda a, b: a.log() + b.exp(),
    "clamp": lambda a, b: a.clamp(0.3, 0.7) * b, "where": lambda a, b: nbgrad.where(a > 0.5, a, b),
    "scalar": lambda a, b: 2.0 * a + b / 3 - 1,
}


@pytest.mark.parametrize("name", sorted(OPS_ON_TENSORS))
def test_tensor_op_forward_and_backward(name):
    f = OPS_ON_TENSORS[name]
    a, ad = _pair((2, 3), 1, transposed=True)
    b, bd = _pair((3,), 2)                     # broadcast: its gradient is a sum over rows
    y, yd = f(a, b), f(ad, bd)
    assert yd.device == nbgrad.device("cuda", 0) and yd.is_cuda
    np.testing.assert_allclose(yd.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-12)
    y.sum().backward()
    yd.sum().backward()
    assert ad.grad.is_cuda and bd.grad.is_cuda
    np.testing.assert_allclose(ad.grad.cpu().numpy(), a.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bd.grad.cpu().numpy(), b.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dim", [None, 0, 1, (0, 2)])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_and_mean(op, dim):
    x, xd = _pair((3, 4, 5), 3)
    y = getattr(x, op)() if dim is None else getattr(x, op)(dim)
    yd = getattr(xd, op)() if dim is None else getattr(xd, op)(dim)
    np.testing.assert_allclose(yd.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-12)
    (y * y).sum().backward()
    (yd * yd).sum().backward()
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-12)


REDUCTIONS = {
    "prod": lambda x, d: x.prod() if d is None else x.prod(d),
    "var": lambda x, d: x.var(d), "std": lambda x, d: x.std(d, correction=0),
    "logsumexp": lambda x, d: x.logsumexp(tuple(range(x.ndim)) if d is None else d),
    "max": lambda x, d: x.max() if d is None else x.max(d).values, "amin": lambda x, d: x.amin(d),
}


@pytest.mark.parametrize("dim", [None, 1, (0, 2)])
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_table_accumulations_and_extremes(op, dim):
    if op in ("prod", "max") and isinstance(dim, tuple):
        return                                 # one dim or all, as PyTorch takes them
    x, xd = _pair((3, 4, 5), 11)
    y, yd = REDUCTIONS[op](x, dim), REDUCTIONS[op](xd, dim)
    np.testing.assert_allclose(yd.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-12)
    (y * y).sum().backward()
    (yd * yd).sum().backward()
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-10)


def test_extremes_take_the_first_tie_and_nan():
    x = nbgrad.tensor([[1.0, 3.0, 3.0, 0.0], [float("nan"), 2.0, float("nan"), 5.0], [2.0, 2.0, 2.0, 2.0]])
    for fn in (lambda t: t.max(1), lambda t: t.min(1)):
        v, i = fn(x)
        vd, id_ = fn(x.cuda())
        np.testing.assert_array_equal(vd.cpu().numpy(), v.numpy())
        assert id_.cpu().tolist() == i.tolist() and id_.is_cuda
    assert x.cuda().argmax().item() == x.argmax().item() == 4
    i = nbgrad.arange(40).reshape(5, 8)
    assert i.cuda().max().item() == 39 and i.cuda().amin(0).cpu().tolist() == list(range(8))
    g = nbgrad.tensor([[1.0, 2.0, 2.0]], requires_grad=True)
    gd = g.detach().cuda().requires_grad_()
    g.max().backward()
    gd.max().backward()                        # shared evenly between the tied maxima
    assert gd.grad.cpu().tolist() == g.grad.tolist() == [[0.0, 0.5, 0.5]]


def test_a_sum_over_many_blocks():
    """More elements than one block's threads x 4: partial sums per block, then a second launch."""
    x = nbgrad.arange(600, dtype=nbgrad.float64)
    assert x.to("cuda").sum().item() == x.sum().item() == 179700.0
    ints = nbgrad.arange(600)
    assert ints.cuda().sum().item() == 179700 and ints.cuda().sum().dtype is nbgrad.int64


@pytest.mark.parametrize("shapes", [((5, 3), (3, 7)), ((2, 4, 3), (2, 3, 5)), ((6,), (6,)), ((4, 6), (6,))])
def test_matmul(shapes):
    (a, ad), (b, bd) = _pair(shapes[0], 4), _pair(shapes[1], 5)
    y, yd = a @ b, ad @ bd
    np.testing.assert_allclose(yd.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-12)
    y.sum().backward()
    yd.sum().backward()
    np.testing.assert_allclose(ad.grad.cpu().numpy(), a.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bd.grad.cpu().numpy(), b.grad.numpy(), rtol=1e-12)


def test_matmul_of_a_transposed_weight_and_integers():
    a, ad = _pair((3, 5), 6)
    w, wd = _pair((4, 5), 7)
    np.testing.assert_allclose((ad @ wd.t()).detach().cpu().numpy(), (a @ w.t()).detach().numpy(), rtol=1e-12)
    i = nbgrad.arange(12).reshape(3, 4)
    assert ((i.cuda() @ i.cuda().t()).cpu().tolist() == (i @ i.t()).tolist())


def test_mlp_training_step_matches_the_cpu():
    nbgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    twin = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    twin.load_state_dict(model.state_dict())
    twin.to("cuda")
    assert all(p.is_cuda for p in twin.parameters()) and not any(p.is_cuda for p in model.parameters())
    x = nbgrad.randn(5, 4, dtype=nbgrad.float64)
    t = nbgrad.randn(5, 3, dtype=nbgrad.float64)
    xd, td = x.to("cuda"), t.cuda()
    opt = nbgrad.optim.SGD(model.parameters(), lr=0.1)
    opt_d = nbgrad.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(2):
        for m, o, xx, tt in ((model, opt, x, t), (twin, opt_d, xd, td)):
            o.zero_grad()
            loss = ((m(xx) - tt) ** 2).mean()
            loss.backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert q.is_cuda and q.grad.is_cuda
        np.testing.assert_allclose(q.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_forward_and_backward(dim, log):
    x, xd = _pair((3, 4, 5), 8)
    fn = nbgrad.log_softmax if log else nbgrad.softmax
    y, yd = fn(x, dim), fn(xd, dim)
    np.testing.assert_allclose(yd.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-12)
    w = nbgrad.tensor(np.random.default_rng(9).standard_normal((3, 4, 5)))
    (y * w).sum().backward()
    (yd * w.cuda()).sum().backward()
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy(reduction, weighted):
    z, zd = _pair((4, 6), 10)
    t = nbgrad.tensor([1, 0, 5, -100])
    w = nbgrad.tensor(np.linspace(0.5, 1.5, 6)) if weighted else None
    loss = nn.functional.cross_entropy(z, t, weight=w, reduction=reduction)
    loss_d = nn.functional.cross_entropy(zd, t.cuda(), weight=w.cuda() if weighted else None, reduction=reduction)
    assert loss_d.is_cuda
    np.testing.assert_allclose(loss_d.detach().cpu().numpy(), loss.detach().numpy(), rtol=1e-12)
    loss.sum().backward()
    loss_d.sum().backward()
    np.testing.assert_allclose(zd.grad.cpu().numpy(), z.grad.numpy(), rtol=1e-12)


def test_a_target_out_of_range_is_pytorchs_error():
    z = nbgrad.randn(3, 4, device="cuda", requires_grad=True)
    with pytest.raises(IndexError, match="Target 7 is out of bounds."):
        nn.functional.cross_entropy(z, nbgrad.tensor([0, 7, 1], device="cuda"))


INDEXING = {
    "rows": lambda t, i: t[i], "columns": lambda t, i: t[:, i], "rows_and_slice": lambda t, i: t[i, 1:],
    "index_select": lambda t, i: t.index_select(1, i), "mask": lambda t, i: t[t > 0.5],
    "two_indices": lambda t, i: t[i, i],
}


@pytest.mark.parametrize("name", sorted(INDEXING))
def test_advanced_indexing_and_its_backward(name):
    """Repeated indices: the backward's scatter adds them up (atomic adds)."""
    x, xd = _pair((4, 5), 12)
    idx = nbgrad.tensor([3, 0, 3, 1])
    y, yd = INDEXING[name](x, idx), INDEXING[name](xd, idx.cuda())
    assert yd.is_cuda
    np.testing.assert_array_equal(yd.detach().cpu().numpy(), y.detach().numpy())
    (y * y).sum().backward()
    (yd * yd).sum().backward()
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-12)


def test_index_put_and_its_errors():
    x = nbgrad.randn(4, 5, dtype=nbgrad.float64)
    c, cd = x.clone(), x.cuda()
    idx = nbgrad.tensor([3, 0, 3, 1])
    c[idx] = 7.0
    cd[idx.cuda()] = 7.0
    np.testing.assert_array_equal(cd.cpu().numpy(), c.numpy())
    ones = nbgrad.ones(4, 5, dtype=nbgrad.float64)
    c.index_put_((idx,), ones, accumulate=True)
    cd.index_put_((idx.cuda(),), ones.cuda(), accumulate=True)
    np.testing.assert_array_equal(cd.cpu().numpy(), c.numpy())
    with pytest.raises(IndexError, match="index 9 is out of bounds for dimension 0 with size 4"):
        cd[nbgrad.tensor([9], device="cuda")]


def test_gather_scatter_along_a_dim():
    x, xd = _pair((3, 4), 13)
    idx = nbgrad.tensor([[0, 3, 3], [1, 1, 0], [2, 0, 2]])
    y, yd = nbgrad.gather(x, 1, idx), nbgrad.gather(xd, 1, idx.cuda())
    np.testing.assert_array_equal(yd.detach().cpu().numpy(), y.detach().numpy())
    (y * y).sum().backward()                   # the backward scatter-adds: repeated indices add up
    (yd * yd).sum().backward()
    np.testing.assert_allclose(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-12)
    src = nbgrad.arange(9, dtype=nbgrad.float64).reshape(3, 3)
    z = nbgrad.zeros(3, 4, dtype=nbgrad.float64)
    for reduce in (None, "add"):
        kw = {} if reduce is None else {"reduce": reduce}
        a = z.scatter(1, idx, src, **kw) if reduce is None else z.scatter_add(1, idx, src)
        b = z.cuda().scatter(1, idx.cuda(), src.cuda()) if reduce is None else z.cuda().scatter_add(1, idx.cuda(),
                                                                                                   src.cuda())
        np.testing.assert_array_equal(b.cpu().numpy(), a.numpy())
    with pytest.raises(RuntimeError, match="index 4 is out of bounds for dimension 1 with size 4"):
        nbgrad.gather(xd, 1, nbgrad.tensor([[4]], device="cuda"))


def test_flip():
    x, xd = _pair((3, 4, 2), 14)
    for dims in ((0,), (1, 2), (0, 1, 2)):
        np.testing.assert_array_equal(xd.flip(dims).detach().cpu().numpy(), x.flip(dims).detach().numpy())
    xd.flip((0, 2)).mul(nbgrad.arange(24, dtype=nbgrad.float64, device="cuda").reshape(3, 4, 2)).sum().backward()
    x.flip((0, 2)).mul(nbgrad.arange(24, dtype=nbgrad.float64).reshape(3, 4, 2)).sum().backward()
    np.testing.assert_array_equal(xd.grad.cpu().numpy(), x.grad.numpy())


def test_cat_stack_and_copies():
    a, b = nbgrad.randn(2, 3), nbgrad.randn(4, 3)
    assert nbgrad.cat([a.cuda(), b.cuda()]).cpu().tolist() == nbgrad.cat([a, b]).tolist()
    assert nbgrad.cat([a.cuda().t(), b.cuda().t()], 1).cpu().tolist() == nbgrad.cat([a.t(), b.t()], 1).tolist()
    assert nbgrad.stack([a.cuda(), a.cuda() * 2], 1).cpu().tolist() == nbgrad.stack([a, a * 2], 1).tolist()
    x = a.cuda().requires_grad_()
    nbgrad.cat([x, x * 3]).sum().backward()
    assert x.grad.is_cuda and x.grad.cpu().tolist() == [[4.0] * 3] * 2
    c = a.cuda().clone()
    c[0] = 5.0                                 # a copy into a row: the strided kernel, in place
    assert c.cpu()[0].tolist() == [5.0] * 3 and c.cpu()[1].tolist() == a[1].tolist()


def test_adam_and_an_mlp_with_cross_entropy():
    """The benchmark's MLP step (Linear, ReLU, cross_entropy) with Adam, CPU and 'cuda' side by side."""
    nbgrad.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    twin = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    twin.load_state_dict(model.state_dict())
    twin.cuda()
    x, t = nbgrad.randn(6, 5, dtype=nbgrad.float64), nbgrad.tensor([0, 2, 1, 1, 0, 2])
    opts = nbgrad.optim.Adam(model.parameters(), lr=0.05), nbgrad.optim.Adam(twin.parameters(), lr=0.05)
    for _ in range(2):
        for m, o, xx, tt in ((model, opts[0], x, t), (twin, opts[1], x.cuda(), t.cuda())):
            o.zero_grad()
            nn.functional.cross_entropy(m(xx), tt).backward()
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(q.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-10)


# -- numbers passed by value -------------------------------------------------------------------------------
def test_numbers_are_passed_to_the_table_kernels_by_value():
    """A number operand is a NumPy scalar of the op's dtype, an argument of the kernel (``c_cv``,
    ``strided_av``, ...): no device array is made for it. Contiguous and strided, first or middle."""
    from nbgrad.ops.targets import CPU
    assert type(CUDA.number(2, np.float32)) is np.float32
    kept = dict(CUDA._numbers)
    x = _inputs(1, (3, 2), np.float64, seed=5)[0]
    mask = x > 0.5
    for transposed in (False, True):           # the contiguous kernels, then the strided ones
        on_host = {"x": x.T if transposed else x, "m": mask.T if transposed else mask}
        on_dev = {k: CUDA.permute(CUDA.asarray(v)) if transposed else CUDA.asarray(v)
                  for k, v in (("x", x), ("m", mask))}
        for kernel, operands in (("mul", ("x", 2.5)), ("sub", (1, "x")), ("clamp", ("x", 0.3, 0.6)),
                                 ("where", ("m", -1.0, "x"))):
            shape = on_host["x"].shape
            cpu = CPU.launch(kernel, [on_host.get(o, o) for o in operands], shape, np.float64)
            _compare(cpu, CUDA.launch(kernel, [on_dev.get(o, o) for o in operands], shape, np.float64), np.float64)
    assert CUDA._numbers == kept               # no one-element device array was made for a number
    t = nbgrad.tensor(x, device="cuda")
    t.t()[0] = 7.0                             # a number copied into a strided view, in place
    assert t.cpu().numpy()[:, 0].tolist() == [7.0] * 3
    np.testing.assert_allclose((t * 3 - 1).cpu().numpy(), t.cpu().numpy() * 3 - 1)


# -- nonzero and prod's backward with zeros ----------------------------------------------------------------
def test_nonzero_matches_the_cpu():
    """More elements than a block (8 blocks' counts scanned) with NaN (nonzero), a transposed view,
    bool, int, 0-d, empty and all-zero inputs; ``as_tuple`` and ``argwhere``."""
    rng = np.random.default_rng(6)
    big = rng.integers(-1, 2, (4, 15)).astype(np.float64)
    big[1, 3] = np.nan
    small = rng.integers(-1, 2, (3, 4)).astype(np.float64)
    cases = [big, small.T, small > 0, small.astype(np.int64), np.array(0.0), np.array(2.5), np.zeros((0, 3)),
             np.zeros((2, 2))]
    for host in cases:
        cpu = nbgrad.tensor(host)
        dev = cpu.cuda() if host is not cases[1] else nbgrad.tensor(small, device="cuda").t()
        assert dev.shape == cpu.shape             # (a 0-d tensor stays 0-d on the way)
        got = dev.nonzero()
        assert got.device.type == "cuda" and got.dtype == nbgrad.int64
        assert got.shape == cpu.nonzero().shape and got.cpu().tolist() == cpu.nonzero().tolist(), host
    d = nbgrad.tensor(small, device="cuda")
    assert [t.cpu().tolist() for t in d.nonzero(as_tuple=True)] == [t.tolist() for t in nbgrad.tensor(small).nonzero(
        as_tuple=True)]
    assert nbgrad.argwhere(d).cpu().tolist() == np.argwhere(small).tolist()


@pytest.mark.parametrize("rows,dim", [(3, None), (3, 0), (3, 1), (1, None)])
def test_prod_backward_with_zeros_matches_the_cpu(rows, dim):
    """Slices with one zero, two zeros and none (along a dim), the whole with several zeros (all
    zeros, no kernel) or one; on a transposed input."""
    x = np.array([[0.5, 0.0, 2.0, 1.5], [0.0, 3.0, 0.0, -1.0], [1.25, 2.0, -0.5, 4.0]])[:rows]
    grads = []
    for device in ("cpu", "cuda"):
        t = nbgrad.tensor(x.T.copy(), device=device).t().detach().requires_grad_(True)
        y = t.prod() if dim is None else t.prod(dim)
        (y * nbgrad.arange(1.0, y.numel() + 1, dtype=nbgrad.float64, device=device).reshape(y.shape)).sum().backward()
        grads.append(t.grad.cpu().numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    assert grads[0].any() == (rows == 1 or dim is not None)


def test_gradcheck_of_prod_with_a_zero_on_the_device():
    """Float64 gradcheck on 'cuda' (its perturbations write numbers, by value, into the input)."""
    x = nbgrad.tensor([[0.5, 0.0, 2.0], [1.5, -1.0, 3.0]], dtype=nbgrad.float64, device="cuda", requires_grad=True)
    assert nbgrad.autograd.gradcheck(lambda t: t.prod(1), (x,))
    assert nbgrad.autograd.gradcheck(lambda t: t.prod(), (x,))


# -- what stays on the device ------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*encountered in scalar divide:RuntimeWarning")   # the simulator's 0/0
def test_the_nll_sums_stay_on_the_device():
    """nll's total and total weight are 0-d device arrays (no read back): the mean divides on the
    device, its backward too; every target ignored gives NaN as on the CPU."""
    from nbgrad.ops.targets.cuda import DeviceArray
    z, zd = _pair((3, 4), 11)
    _, total, weight = CUDA.loss.nll_forward(zd.detach()._data, CUDA.asarray(np.array([1, 0, 3])), None, -100)
    assert isinstance(total, DeviceArray) and isinstance(weight, DeviceArray) and total.shape == weight.shape == ()
    assert CUDA.item(weight) == 3.0
    for t in ([2, -100, 1], [-100] * 3):
        loss = nn.functional.nll_loss(z, nbgrad.tensor(t))
        loss_d = nn.functional.nll_loss(zd, nbgrad.tensor(t, device="cuda"))
        np.testing.assert_allclose(loss_d.detach().cpu().numpy(), loss.detach().numpy(), rtol=1e-12)
        g, = nbgrad.autograd.grad(loss, z, create_graph=True)
        gd, = nbgrad.autograd.grad(loss_d, zd, create_graph=True)
        np.testing.assert_allclose(gd.detach().cpu().numpy(), g.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(nbgrad.autograd.grad(gd.sum(), zd)[0].cpu().numpy(),
                                   nbgrad.autograd.grad(g.sum(), z)[0].numpy(), rtol=1e-12)


def test_tril_and_triu_make_their_mask_on_the_device():
    """The triangle's mask is made by kernels on the input's device (it was a host array: PyTorch's
    device-mixing error on cuda); a batch, a wide matrix, diagonals either side, and backward."""
    x = np.arange(24.0).reshape(2, 3, 4)
    for name, diagonal in (("tril", 0), ("tril", -1), ("triu", 1), ("triu", -2)):
        t = nbgrad.tensor(x, device="cuda", requires_grad=True)
        y = getattr(t, name)(diagonal)
        y.sum().backward()
        want = getattr(np, name)(x, diagonal)
        assert y.device.type == "cuda" and y.detach().cpu().numpy().tolist() == want.tolist()
        assert t.grad.cpu().numpy().tolist() == getattr(np, name)(np.ones_like(x), diagonal).tolist()


# -- zeros for a missing gradient ---------------------------------------------------------------------------
class _TwoOutputs(nbgrad.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        ctx.devices = (ga.device, gb.device)
        return ga * 2 + gb * 3


def test_the_zeros_for_a_missing_gradient_are_made_on_its_device():
    """An output that got no gradient (one piece of a split, one output of a Function) gets zeros
    from its own target: on cuda for a cuda tensor, and on the CPU for a CPU tensor even where
    the default device is cuda."""
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0], device="cuda", requires_grad=True)
    a, _ = x.split(2)
    a.sum().backward()
    assert x.grad.device.type == "cuda" and x.grad.cpu().tolist() == [1.0, 1.0, 0.0, 0.0]
    x.grad = None
    first, _ = _TwoOutputs.apply(x)
    first.sum().backward()
    assert [d.type for d in first.grad_fn.devices] == ["cuda", "cuda"]
    assert x.grad.cpu().tolist() == [2.0] * 4
    nbgrad.set_default_device("cuda")
    try:
        y = nbgrad.tensor([1.0, 2.0], device="cpu", requires_grad=True)
        _, b = y.unbind()
        b.backward()
    finally:
        nbgrad.set_default_device("cpu")
    assert y.grad.device.type == "cpu" and y.grad.tolist() == [0.0, 1.0]


# -- the optimizers' fused kernels --------------------------------------------------------------------------
OPTIMIZERS = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
              ("SGD", dict(lr=0.1, maximize=True)),
              ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
              ("AdamW", dict(lr=0.05, weight_decay=0.1)),
              ("NAdam", dict(lr=0.05, decoupled_weight_decay=True, weight_decay=0.1)),
              ("RAdam", dict(lr=0.05, weight_decay=0.1)),
              ("Adamax", dict(lr=0.05, weight_decay=0.1, maximize=True)),
              ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
              ("RMSprop", dict(lr=0.01)),
              ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
              ("Adadelta", dict(weight_decay=0.1))]


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_optimizer_steps_match_the_cpu(name, kw):
    """Every optimizer family's kernel, with its flags on, against the CPU loop made from the same rule:
    seven steps (RAdam's rectified branch starts at the sixth), a new gradient each."""
    rng = np.random.default_rng(3)
    start = rng.standard_normal((2, 3))
    grads = [rng.standard_normal((2, 3)) for _ in range(7)]
    cpu, dev = nbgrad.tensor(start, requires_grad=True), nbgrad.tensor(start, device="cuda", requires_grad=True)
    opts = [getattr(nbgrad.optim, name)([p], **kw) for p in (cpu, dev)]
    for g in grads:
        for p, o in zip((cpu, dev), opts):
            p.grad = nbgrad.tensor(g, device=p.device)
            o.step()
    assert dev.device.type == "cuda"
    np.testing.assert_allclose(dev.detach().cpu().numpy(), cpu.detach().numpy(), rtol=1e-12, atol=1e-14)
    for key, value in opts[0].state[cpu].items():
        np.testing.assert_allclose(opts[1].state[dev][key].cpu().numpy(), value.numpy(), rtol=1e-12, atol=1e-14)


def test_an_optimizer_step_on_strided_float32_arrays():
    """The target's step on a transposed parameter with a float64 gradient and a float32 state:
    updated through contiguous copies written back, as the CPU's."""
    from nbgrad.ops.targets import CPU
    rng = np.random.default_rng(4)
    p, g, m, v = (rng.uniform(0.1, 1, (3, 2)).astype(np.float32) for _ in range(4))
    hyper = (1.0, 0.1, 0.999, 0.001, 1.0, 1e-8, -0.01, 0.0, 0.0, 0.0, 0.0)
    dp, dm, dv = CUDA.permute(CUDA.asarray(p.T.copy())), CUDA.asarray(m), CUDA.asarray(v)
    hp = p.T.copy().T
    CPU.optim.step("adam", hp, g.astype(np.float64), [m, v, None], hyper)
    CUDA.optim.step("adam", dp, CUDA.asarray(g.astype(np.float64)), [dm, dv, None], hyper)
    for host, d in ((hp, dp), (m, dm), (v, dv)):      # (a GPU may contract a * b + c into one fma)
        np.testing.assert_allclose(CUDA.to_host(d), host, rtol=1e-6)
    with pytest.raises(RuntimeError, match="a state or gradient of 5 elements for a parameter of 6 elements"):
        CUDA.optim.step("adam", dp, CUDA.asarray(np.zeros(5)), [dm, dv, None], hyper)


# -- devices --------------------------------------------------------------------------------------------
def test_round_trips_and_devices():
    x = nbgrad.randn(2, 3)
    d = x.to("cuda")
    assert d.device == nbgrad.device("cuda:0") and str(d.device) == "cuda:0" and d.is_cuda
    assert x.to("cpu") is x and d.to("cuda") is d and d.cuda() is d
    np.testing.assert_array_equal(d.cpu().numpy(), x.numpy())
    np.testing.assert_array_equal(x.cuda().cpu().numpy(), x.numpy())
    np.testing.assert_array_equal(x.to(nbgrad.device("cuda")).cpu().numpy(), x.numpy())
    np.testing.assert_array_equal(x.to("cuda", nbgrad.float64).cpu().numpy(), x.numpy().astype(np.float64))
    z = nbgrad.zeros(2, 2, device="cuda")
    assert z.is_cuda and z.cpu().tolist() == [[0, 0], [0, 0]]
    f = nbgrad.full((3,), 2.5, device="cuda:0")
    assert f.tolist() == [2.5, 2.5, 2.5] and f[1].item() == 2.5
    e = nbgrad.eye(2, device="cuda")
    assert e.t().contiguous().cpu().tolist() == [[1, 0], [0, 1]]
    s = d[:, 1:]
    assert s.is_cuda and s.cpu().tolist() == x[:, 1:].tolist()
    assert d.t().reshape(6).cpu().tolist() == x.t().reshape(6).tolist()
    assert "device='cuda:0'" in repr(d)


def test_numba_device_arrays_are_taken_without_a_copy():
    from numba import cuda
    d = cuda.to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    t = nbgrad.as_tensor(d)
    assert t.is_cuda and t.shape == (2, 3) and t.dtype is nbgrad.float32
    t.add_(1)                                  # the same memory: the numba array sees the write
    np.testing.assert_array_equal(d.copy_to_host(), np.arange(1, 7).reshape(2, 3))
    assert nbgrad.as_tensor([1, 2], device="cuda").is_cuda


def test_host_conversions_are_pytorchs():
    t = nbgrad.ones(2, device="cuda")
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu"):
        t.numpy()
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        np.asarray(t)
    x = nbgrad.ones(2)
    assert not hasattr(x, "__cuda_array_interface__")
    assert x.to(t).is_cuda and x.to(t.double()).dtype is nbgrad.float64        # to(other): its device and dtype
    assert t.tolist() == [1.0, 1.0] and float(t.sum()) == 2.0 and bool(t[0])


@pytest.mark.skipif(SIMULATED, reason="the simulator's arrays are host arrays: no CUDA Array Interface")
def test_the_cuda_array_interface_is_a_view():
    t = nbgrad.arange(12, dtype=nbgrad.float32, device="cuda").reshape(3, 4)
    iface = t.t()[1:].__cuda_array_interface__
    assert iface["shape"] == (3, 3) and iface["strides"] == (4, 16) and iface["typestr"] == "<f4"
    assert iface["data"][0] == t.data_ptr() + 4          # t[0, 1]
    from numba import cuda
    assert cuda.as_cuda_array(t).copy_to_host().tolist() == t.cpu().tolist()


def test_set_default_device():
    assert nbgrad.get_default_device() == nbgrad.device("cpu")
    nbgrad.set_default_device("cuda")
    try:
        assert nbgrad.get_default_device() == nbgrad.device("cuda:0")
        assert nbgrad.zeros(2).is_cuda and nbgrad.tensor([1.0]).is_cuda and nbgrad.randn(2, 2).is_cuda
        assert nn.Linear(2, 3).weight.is_cuda
        assert nbgrad.zeros(2, device="cpu").device == nbgrad.device("cpu")
    finally:
        nbgrad.set_default_device(None)
    assert not nbgrad.zeros(2).is_cuda


def test_the_gradient_of_a_move_goes_back():
    x = nbgrad.randn(3, requires_grad=True)
    y = x.cuda() * 3
    assert y.grad_fn.next_functions[0][0].name() == "ToCopyBackward0"
    y.sum().backward()
    assert not x.grad.is_cuda and x.grad.tolist() == [3.0, 3.0, 3.0]


def test_mixing_devices_is_pytorchs_error():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device, but found at least two "
                                           "devices, cuda:0 and cpu!"):
        nbgrad.ones(3, device="cuda") + nbgrad.ones(3)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device, but found at least two "
                                           "devices, cpu and cuda:0!"):
        nbgrad.ones(2, 3) @ nbgrad.ones(3, device="cuda")


def test_a_missing_kernel_says_so_instead_of_running_on_the_cpu():
    x = nbgrad.randn(2, 3, device="cuda")
    with pytest.raises(NotImplementedError, match=r"'svd\.svd_batch' is not implemented for cuda"):
        nbgrad.linalg.svdvals(x)
    with pytest.raises(AttributeError, match="'CudaTarget' object has no attribute 'no_such_family'"):
        CUDA.no_such_family


def test_the_gpu_benchmark_script_runs(tmp_path):
    """benchmarks/gpu.py end to end at tiny sizes, so that a GPU session does not find it broken
    (every workload of it runs in the simulator: ``python -m benchmarks.gpu --tiny --quick``)."""
    import json
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    from benchmarks import gpu
    out = tmp_path / "gpu.json"
    try:
        assert gpu.main(["--tiny", "--quick", "--only", "tutorial_5x5,mlp_step", "--out", str(out)]) == 0
    finally:
        gpu.SIZES.update(gpu.SIZES_FULL)
    results = json.loads(out.read_text())["results"]
    assert all(isinstance(results[w]["nbgrad"], float) for w in ("tutorial_5x5", "mlp_step")), results


def test_the_target_answers_what_nbgrad_cuda_asks():
    assert nbgrad.ops.targets.cuda_target() is CUDA
    assert CUDA.is_available() and CUDA.device_count() >= 1
    CUDA.synchronize()
    assert CUDA.device_name() == ("SIMULATOR" if SIMULATED else CUDA.device_name())
    assert "simulator" in CUDA.implementation() or not SIMULATED


# -- scan, sort and count families (ops/targets/cuda_scan.py, cuda_sort.py, cuda_count.py) ------------
def _both(host, requires_grad=False):
    """The same values as a CPU tensor and a CUDA tensor (leaves)."""
    return (nbgrad.tensor(host, requires_grad=requires_grad),
            nbgrad.tensor(host, device="cuda", requires_grad=requires_grad))


def _same(cpu, dev):
    assert dev.is_cuda and cpu.dtype is dev.dtype and cpu.shape == dev.shape
    np.testing.assert_allclose(dev.detach().cpu().numpy(), cpu.detach().numpy(), rtol=1e-12, atol=1e-13,
                               equal_nan=True)


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumulative_forward_and_backward(op, dim):
    """Along the last dim (rows) and a middle one (columns of a 3-D block), with a zero in
    cumprod's input (its exact zero rule), and int64 input (int64 accumulation)."""
    host = np.random.default_rng(dim + 5).uniform(0.5, 1.5, (2, 3, 3))
    host[1, 1, 1] = 0.0
    c, d = _both(host, requires_grad=True)
    yc, yd = getattr(c, op)(dim), getattr(d, op)(dim)
    _same(yc, yd)
    g = np.random.default_rng(1).uniform(-1, 1, host.shape)
    yc.backward(nbgrad.tensor(g))
    yd.backward(nbgrad.tensor(g, device="cuda"))
    _same(c.grad, d.grad)
    ints = np.arange(1, 7).reshape(2, 3)
    _same(getattr(nbgrad.tensor(ints), op)(dim % 2), getattr(nbgrad.tensor(ints, device="cuda"), op)(dim % 2))


def test_cumprod_backward_without_zeros_and_the_running_extremes():
    host = np.array([[0.5, 2.0, np.nan, 1.0], [3.0, 1.0, 3.0, 0.5]])
    for fn in ("cummax", "cummin"):
        c, d = _both(host, requires_grad=True)
        (vc, ic), (vd, idx) = getattr(c, fn)(1), getattr(d, fn)(1)
        _same(vc, vd)
        _same(ic, idx)
        vc.sum().backward()
        vd.sum().backward()
        _same(c.grad, d.grad)
    c, d = _both(host[1:], requires_grad=True)
    c.cumprod(1).sum().backward()
    d.cumprod(1).sum().backward()
    _same(c.grad, d.grad)


def test_cumprod_double_backward_with_zeros_on_the_device():
    """The recorded rule (create_graph=True with a zero) builds its mask on x's device."""
    h = np.array([[0.5, 0.0, 2.0, 1.5], [1.0, 2.0, 0.5, 3.0]])
    out = []
    for dev in ("cpu", "cuda"):
        x = nbgrad.tensor(h, device=dev, requires_grad=True)
        g, = nbgrad.autograd.grad(x.cumprod(1).sum(), x, create_graph=True)
        gg, = nbgrad.autograd.grad((g * g).sum(), x)
        out.append((g, gg))
    _same(out[0][0], out[1][0])
    _same(out[0][1], out[1][1])


@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_stable_with_nans_as_pytorch(descending):
    """Ties, NaNs and rows longer than one insertion run (merge passes): values, indices, backward."""
    host = np.round(np.random.default_rng(3).uniform(0, 4, (2, 37)))
    host[0, [3, 20]] = np.nan
    c, d = _both(host, requires_grad=True)
    (vc, ic), (vd, idx) = c.sort(1, descending), d.sort(1, descending)
    _same(vc, vd)
    _same(ic, idx)
    (vc * nbgrad.arange(37.0)).sum().backward()
    (vd * nbgrad.arange(37.0, device="cuda")).sum().backward()
    _same(c.grad, d.grad)
    _same(c.argsort(0), d.argsort(0))
    for a, b in zip(c.reshape(-1).sort(descending=descending), d.reshape(-1).sort(descending=descending)):
        _same(a, b)                            # one row of 74: an odd number of merge passes


def test_topk_kthvalue_median_mode_and_unique():
    host = np.array([[3.0, 1.0, 2.0, 1.0, 5.0], [2.0, 2.0, 0.0, 7.0, 0.0]])
    c, d = _both(host)
    for fn, args in (("topk", (2,)), ("topk", (3, 1, False)), ("kthvalue", (2,)), ("median", (1,)),
                     ("mode", (1,)), ("nanmedian", (0,))):
        for a, b in zip(getattr(c, fn)(*args), getattr(d, fn)(*args)):
            _same(a, b)
    _same(c.median(), d.median())
    for kw in (dict(), dict(return_inverse=True, return_counts=True)):
        a, b = nbgrad.unique(c, **kw), nbgrad.unique(d, **kw)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            _same(x, y)
    a, b = nbgrad.unique_consecutive(c, return_counts=True), nbgrad.unique_consecutive(d, return_counts=True)
    _same(a[0], b[0])
    _same(a[1], b[1])
    rows = np.array([[1.0, 2.0], [0.0, 5.0], [1.0, 2.0], [np.nan, 1.0], [0.0, 5.0], [0.0, 4.0]])
    c, d = _both(rows)
    for fn in (nbgrad.unique, nbgrad.unique_consecutive):
        for dim in (0, 1):
            for x, y in zip(fn(c, return_inverse=True, return_counts=True, dim=dim),
                            fn(d, return_inverse=True, return_counts=True, dim=dim)):
                _same(x, y)
    from nbgrad.ops.targets import cuda_cublas
    assert not cuda_cublas.ENABLED or not SIMULATED      # the CuPy path is never taken in the simulator


def test_bincount_and_histc_count_with_atomic_adds():
    x = np.array([1, 4, 1, 0, 4, 4, 9])
    c, d = _both(x)
    _same(c.bincount(), d.bincount())
    _same(c.bincount(minlength=12), d.bincount(minlength=12))
    w = np.linspace(0.5, 2.0, 7)
    _same(c.bincount(nbgrad.tensor(w)), d.bincount(nbgrad.tensor(w, device="cuda")))
    with pytest.raises(RuntimeError, match="bincount only supports 1-d non-negative integral inputs."):
        nbgrad.tensor([1, -2, 3], device="cuda").bincount()
    h = np.array([0.1, 0.5, np.nan, 2.0, -1.0, 0.9, 0.5])
    c, d = _both(h)
    _same(c.histc(4, 0, 1), d.histc(4, 0, 1))
    _same(c[~c.isnan()].histc(3), d[~d.isnan()].histc(3))


# -- DLPack and the CUDA Array Interface (nbgrad/_cuda_dlpack.py, nbgrad/_interop.py) ----------------
def test_a_cuda_tensor_exports_a_cuda_dlpack_capsule_of_its_view():
    """The capsule's fields, read back through the importer: kDLCUDA, the view's first element,
    shape, element strides as byte strides, dtype; the deleter runs once the importer is gone.
    (What a real consumer, CuPy or PyTorch, does with it needs a GPU: untested here.)"""
    import gc
    from nbgrad import _cuda_dlpack
    t = nbgrad.arange(12, dtype=nbgrad.float32, device="cuda").reshape(3, 4)
    view = t.t()[1:]
    assert view.__dlpack_device__() == (2, 0) and nbgrad.ones(1).__dlpack_device__() == (1, 0)
    held = len(_cuda_dlpack._ALIVE)
    capsule = view.__dlpack__()
    assert _cuda_dlpack.device_type(capsule) == 2 and len(_cuda_dlpack._ALIVE) == held + 1
    imported = _cuda_dlpack.interface(capsule)
    iface = imported.__cuda_array_interface__
    assert iface["shape"] == (3, 3) and iface["strides"] == (4, 16) and iface["typestr"] == "<f4"
    assert iface["data"][0] == view.data_ptr() == t.data_ptr() + 4
    assert _cuda_dlpack.device_type(capsule) is None          # consumed: renamed "used_dltensor"
    del imported, capsule
    gc.collect()
    assert len(_cuda_dlpack._ALIVE) == held
    unused = nbgrad.ones(2, dtype=nbgrad.bool, device="cuda").__dlpack__()
    b = _cuda_dlpack.interface(unused).__cuda_array_interface__
    assert b["typestr"] == "|b1" and b["shape"] == (2,)
    nbgrad.ones(2, device="cuda").__dlpack__()                 # never consumed: freed with the capsule
    gc.collect()
    assert len(_cuda_dlpack._ALIVE) == held
    with pytest.raises(BufferError, match="Can't export tensors that require gradient"):
        nbgrad.ones(2, device="cuda", requires_grad=True).__dlpack__()


def test_from_dlpack_takes_cuda_producers_without_a_copy():
    from numba import cuda
    d = cuda.to_device(np.arange(4, dtype=np.float64))
    t = nbgrad.from_dlpack(d)                   # a numba device array: shared memory
    t.mul_(2)
    np.testing.assert_array_equal(d.copy_to_host(), [0.0, 2.0, 4.0, 6.0])
    u = nbgrad.ones(3, device="cuda")
    assert nbgrad.from_dlpack(u) is u and nbgrad.from_dlpack(u, copy=True).data_ptr() != u.data_ptr()
    c = nbgrad.from_dlpack(d, copy=True)
    c.add_(1)
    np.testing.assert_array_equal(d.copy_to_host(), [0.0, 2.0, 4.0, 6.0])
