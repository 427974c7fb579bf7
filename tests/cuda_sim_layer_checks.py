"""The CUDA target's layer families (conv, pool, norm, embedding) against the CPU's, run by
``tests/test_cuda.py`` in the simulator's pytest process next to ``cuda_sim_checks.py``
(``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported), or unchanged on a real GPU.

One tiny case per kernel family, forward and backward through the public layers (the same
``nn.Conv2d`` etc. on both devices), the index checks' errors, and a small CNN's training
steps on 'cuda' equal to the CPU's.
"""
import numpy as np
import pytest

import nbgrad
from nbgrad import nn
from nbgrad.nn import functional as F
from nbgrad.ops.targets import CPU, target_for

CUDA = target_for("cuda")
pytestmark = pytest.mark.filterwarnings("error::numba.core.errors.NumbaPerformanceWarning")
TOL = dict(rtol=1e-10, atol=1e-12)


def _twin(shape, seed, requires_grad=True):
    """The same float64 values as a CPU leaf and a 'cuda' leaf."""
    a = np.random.default_rng(seed).standard_normal(shape)
    cpu = nbgrad.tensor(a, dtype=nbgrad.float64, requires_grad=requires_grad)
    return cpu, cpu.detach().cuda().requires_grad_(requires_grad)


def _same(dev, cpu):
    assert dev.is_cuda
    np.testing.assert_allclose(dev.detach().cpu().numpy(), cpu.detach().numpy(), **TOL)


def _both(fn, *pairs, seed=99):
    """``fn`` on the CPU leaves and on the 'cuda' leaves: equal outputs, and equal gradients
    of every leaf for the same random output weights."""
    y = fn(*(p[0] for p in pairs))
    yd = fn(*(p[1] for p in pairs))
    _same(yd, y)
    w = nbgrad.tensor(np.random.default_rng(seed).standard_normal(tuple(y.shape)))
    (y * w).sum().backward()
    (yd * w.cuda()).sum().backward()
    for cpu, dev in pairs:
        if cpu.requires_grad:
            assert dev.grad.is_cuda
            _same(dev.grad, cpu.grad)
    return y, yd


def test_each_family_has_the_cpu_families_functions():
    for family in ("conv", "pool", "norm", "embedding"):
        cpu = getattr(CPU, family)
        missing = [name for name in cpu.__all__ if not callable(getattr(getattr(CUDA, family), name, None))]
        assert not missing, (family, missing)


# -- convolution ------------------------------------------------------------------------------------
CONVS = {
    "strided_padded_grouped_dilated": dict(x=(1, 4, 5, 4), w=(4, 2, 3, 2), bias=True,
                                           kw=dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    "conv1d_same_no_bias": dict(x=(2, 2, 5), w=(2, 2, 4), bias=False, kw=dict(padding="same")),
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_convolution_forward_and_backward(case):
    c = CONVS[case]
    fn = F.conv2d if len(c["x"]) == 4 else F.conv1d
    pairs = [_twin(c["x"], 1), _twin(c["w"], 2)] + ([_twin(c["w"][:1], 3)] if c["bias"] else [])
    _both(lambda x, w, *b: fn(x, w, *b, **c["kw"]), *pairs)


def test_convolution_double_backward():
    """create_graph: the input and weight gradients are recorded convolutions again."""
    x, xd = _twin((1, 2, 3, 3), 4)
    w, wd = _twin((2, 1, 2, 2), 5)
    outs = []
    for a, b in ((x, w), (xd, wd)):
        y = F.conv2d(a, b, padding=1, groups=2)
        gx, gw = nbgrad.autograd.grad((y * y).sum(), (a, b), create_graph=True)
        (gx.sum() + (gw * gw).sum()).backward()
        outs.append((a.grad, b.grad))
    _same(outs[1][0], outs[0][0])
    _same(outs[1][1], outs[0][1])


def test_a_conv_module_moved_to_cuda_runs_there():
    nbgrad.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    twin = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    twin.load_state_dict(conv.state_dict())
    twin.cuda()
    x, xd = _twin((1, 2, 5, 5), 6, requires_grad=False)
    _same(twin(xd), conv(x))
    with pytest.raises(RuntimeError, match=r"Input type \(torch.DoubleTensor\) and weight type "
                                           r"\(torch.cuda.DoubleTensor\) should be the same"):
        twin(x)


# -- pooling -----------------------------------------------------------------------------------------
POOLS = {
    "max_overlapping": lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
    "max_dilated_ceil": lambda x: F.max_pool2d(x, 2, stride=2, dilation=2, ceil_mode=True),
    "max1d": lambda x: F.max_pool1d(x.flatten(2), 3, stride=2),
    "avg_no_pad_count": lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    "avg_divisor": lambda x: F.avg_pool2d(x, 2, divisor_override=3),
    "adaptive": lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pooling_forward_and_backward(name):
    x = np.random.default_rng(7).standard_normal((2, 2, 5, 5))
    x[0, 0, 1, 1] = x[0, 0, 1, 2]                 # a tie: the first position wins on both devices
    cpu = nbgrad.tensor(x, requires_grad=True)
    _both(POOLS[name], (cpu, cpu.detach().cuda().requires_grad_()))


def test_max_pool_indices_and_windows_wholly_in_the_padding():
    """An output whose window reads only padding is -inf and sends no gradient."""
    x, xd = _twin((1, 2, 3, 1), 8)
    f = lambda t: F.max_pool2d(t, 2, stride=1, padding=(0, 1), dilation=(1, 2), return_indices=True)  # noqa: E731
    (y, i), (yd, id_) = f(x), f(xd)
    assert id_.is_cuda and id_.cpu().tolist() == i.tolist()
    assert yd.cpu().tolist() == y.tolist() == [[[[-np.inf]] * 2] * 2]
    y.sum().backward()
    yd.sum().backward()
    _same(xd.grad, x.grad)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_double_backward(kind):
    """The backward's own backward: max reads the gradient at the saved indices, avg is the forward again."""
    pool = (lambda t: F.max_pool2d(t, 2, stride=1)) if kind == "max" else (lambda t: F.avg_pool2d(t, 2, stride=1))
    x, xd = _twin((1, 1, 3, 3), 9)
    v, vd = _twin((1, 1, 2, 2), 10)
    for a, b in ((x, v), (xd, vd)):
        (g,) = nbgrad.autograd.grad(pool(a), a, b, create_graph=True)
        (g * g).sum().backward()
    _same(vd.grad, v.grad)


def test_a_saved_pooling_index_out_of_range_is_an_error_not_a_write():
    go = np.ones((1, 2, 2))
    idx = np.array([[[0, 3], [9, 1]]])
    msg = "index 9 is out of bounds for a pooled plane of 4 elements"
    for target, a, i in ((CPU, go, idx), (CUDA, CUDA.asarray(go), CUDA.asarray(idx))):
        with pytest.raises(RuntimeError, match=msg):
            target.pool.max_backward(a, i, (2, 2))
        with pytest.raises(RuntimeError, match=msg):
            target.pool.max_gather(a, i)


# -- normalisation ----------------------------------------------------------------------------------
def test_batch_norm_training_then_evaluation():
    nbgrad.manual_seed(0)
    bn, twin = nn.BatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    with nbgrad.no_grad():
        bn.weight.copy_(nbgrad.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(nbgrad.tensor([0.1, 0.0, 0.3]))
    twin.load_state_dict(bn.state_dict())
    twin.cuda()
    run = lambda t: (twin if t.is_cuda else bn)(t)  # noqa: E731
    x, xd = _twin((2, 3, 3, 2), 11)
    _both(run, (x, xd))
    for p, q in zip(bn.parameters(), twin.parameters()):
        _same(q.grad, p.grad)
    _same(twin.running_mean, bn.running_mean)
    _same(twin.running_var, bn.running_var)
    assert twin.num_batches_tracked.item() == 1
    bn.eval()
    twin.eval()
    x, xd = _twin((2, 3, 3, 2), 12)
    _both(run, (x, xd))


def test_batch_norm_of_a_batch_of_vectors_without_affine_or_statistics():
    x, xd = _twin((5, 4), 13)
    _both(lambda t: F.batch_norm(t, None, None, training=True), (x, xd))


def test_batch_norm_double_backward():
    x, xd = _twin((3, 2, 2), 14)
    w, wd = _twin((2,), 15)
    for a, b in ((x, w), (xd, wd)):
        (g,) = nbgrad.autograd.grad((F.batch_norm(a, None, None, b, training=True) ** 3).sum(), a, create_graph=True)
        (g * g).sum().backward()
    _same(xd.grad, x.grad)
    _same(wd.grad, w.grad)


def test_layer_norm_forward_and_backward():
    _both(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), _twin((2, 3, 4), 16), _twin((3, 4), 17), _twin((3, 4), 18))


def test_group_norm_forward_and_backward():
    _both(lambda x, w, b: F.group_norm(x, 2, w, b), _twin((2, 4, 3), 19), _twin((4,), 20), _twin((4,), 21))


# -- embedding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(padding_idx=1, scale_grad_by_freq=True)])
def test_embedding_forward_and_backward(kw):
    """Repeated indices: the backward adds their rows up (atomic adds)."""
    idx = nbgrad.tensor([[0, 3, 3], [1, 3, 4]])
    _both(lambda w: F.embedding(idx.cuda() if w.is_cuda else idx, w, **kw), _twin((5, 3), 22))


def test_embedding_max_norm_and_bad_indices():
    w = nbgrad.tensor(np.random.default_rng(23).standard_normal((5, 3)) * 3)
    wd = w.cuda()
    idx = nbgrad.tensor([4, 0, 4])
    y, yd = F.embedding(idx, w, max_norm=1.5), F.embedding(idx.cuda(), wd, max_norm=1.5)
    _same(yd, y)
    _same(wd, w)                                  # the named rows renormalised in place, the others kept
    with pytest.raises(IndexError, match="index out of range in self"):
        F.embedding(nbgrad.tensor([0, 5], device="cuda"), wd)
    with pytest.raises(IndexError, match=r"select\(\): index -1 out of range for tensor of size \[5, 3\] at "
                                         "dimension 0"):
        F.embedding(nbgrad.tensor([2, -1], device="cuda"), wd, max_norm=1.0)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        F.embedding(idx, wd)


# -- a small CNN ---------------------------------------------------------------------------------------
def _cnn():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).double()


def test_a_cnn_training_step_matches_the_cpu():
    nbgrad.manual_seed(2)
    model, twin = _cnn(), _cnn()
    twin.load_state_dict(model.state_dict())
    twin.to("cuda")
    x = nbgrad.randn(3, 1, 4, 4, dtype=nbgrad.float64)
    t = nbgrad.tensor([0, 2, 1])
    opts = nbgrad.optim.SGD(model.parameters(), lr=0.1), nbgrad.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(2):
        for m, o, xx, tt in ((model, opts[0], x, t), (twin, opts[1], x.cuda(), t.cuda())):
            o.zero_grad()
            F.cross_entropy(m(xx), tt).backward()
            o.step()
    for (name, p), q in zip(model.state_dict().items(), twin.state_dict().values()):
        assert q.is_cuda, name
        np.testing.assert_allclose(q.cpu().numpy(), p.numpy(), err_msg=name, **TOL)
    for p, q in zip(model.parameters(), twin.parameters()):
        _same(q.grad, p.grad)


def test_float32_layers_and_modules_made_on_cuda():
    """float32 through each family (the kernels specialise per dtype); modules built with device='cuda'."""
    x = nbgrad.tensor(np.random.default_rng(24).standard_normal((2, 2, 4, 4)), dtype=nbgrad.float32,
                      requires_grad=True)
    w = nbgrad.tensor(np.random.default_rng(25).standard_normal((3, 2, 2, 2)), dtype=nbgrad.float32,
                      requires_grad=True)
    emb = nn.Embedding(4, 2, padding_idx=0, device="cuda")
    assert emb.weight.is_cuda and emb.weight.dtype is nbgrad.float32 and emb.weight[0].cpu().tolist() == [0.0, 0.0]
    idx = nbgrad.tensor([[1, 3], [3, 0]])

    def net(x, w, table):
        h = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
        h = F.group_norm(F.batch_norm(h, None, None, training=True), 3)
        return F.avg_pool2d(h, 2).flatten(1)[:, :2] + F.embedding(idx.to(x.device), table).sum(1)

    tables = emb.weight.detach().cpu().requires_grad_(), emb.weight
    outs = [net(a.detach().to(dev).requires_grad_(), b.detach().to(dev).requires_grad_(), table)
            for dev, a, b, table in (("cpu", x, w, tables[0]), ("cuda", x, w, tables[1]))]
    assert outs[1].is_cuda and outs[1].dtype is nbgrad.float32
    np.testing.assert_allclose(outs[1].detach().cpu().numpy(), outs[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    outs[0].sum().backward()
    outs[1].sum().backward()
    np.testing.assert_allclose(tables[1].grad.cpu().numpy(), tables[0].grad.numpy(), rtol=1e-5, atol=1e-6)
