"""Programs that ``tests/test_distributed.py`` runs under ``mpiexec -n 2``: one scenario per
call (``python tests/mpi_worker.py SCENARIO``). Every rank checks its own results with
asserts and prints ``OK <scenario> rank <r>`` at the end; the test looks for one line per rank."""
import copy
import sys
import time

import numpy as np

import nbgrad as torch
import nbgrad.distributed as dist
from nbgrad import nn
from nbgrad.nn.parallel import DistributedDataParallel as DDP

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def data_of(rank, shape, dtype=np.float64, seed=0):
    """What rank ``rank`` contributes: any rank can recompute any other's."""
    rng = np.random.default_rng(1000 * seed + rank)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def close(a, b, rtol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0)


def noncontiguous(array):
    """A tensor whose array is a transposed (non-contiguous) view holding ``array``."""
    t = torch.tensor(np.ascontiguousarray(array.T)).t()
    assert not t.is_contiguous()
    return t


# -- collectives against their definitions ------------------------------------------------------------
@scenario
def collectives(rank, world):
    everyone = lambda shape, dtype=np.float64, seed=0: [data_of(r, shape, dtype, seed) for r in range(world)]
    definitions = {dist.ReduceOp.SUM: lambda xs: np.sum(xs, axis=0), dist.ReduceOp.AVG: lambda xs: np.mean(xs, axis=0),
                   dist.ReduceOp.PRODUCT: lambda xs: np.prod(xs, axis=0), dist.ReduceOp.MIN: lambda xs: np.min(xs, axis=0),
                   dist.ReduceOp.MAX: lambda xs: np.max(xs, axis=0)}
    for dtype in (np.float64, np.float32, np.int64):
        for shape in ((), (5,), (3, 4)):
            for op, definition in definitions.items():
                if op == dist.ReduceOp.AVG and dtype == np.int64:
                    continue
                xs = everyone(shape, dtype, seed=int(op))
                t = torch.tensor(xs[rank].copy())
                version = t._version
                assert dist.all_reduce(t, op=op) is None
                close(t.numpy(), definition(xs), rtol=1e-6 if dtype == np.float32 else 1e-12)
                assert t.numpy().dtype == dtype and t._version == version + 1
    # booleans reduce logically (MPI has no arithmetic on them): SUM and MAX are "any", MIN "all"
    flags = [np.array([True, False, rank == 0]) for rank in range(world)]
    for op, definition in ((dist.ReduceOp.SUM, np.any), (dist.ReduceOp.MAX, np.any), (dist.ReduceOp.MIN, np.all)):
        t = torch.tensor(flags[rank].copy())
        dist.all_reduce(t, op=op)
        assert t.tolist() == definition(flags, axis=0).tolist(), (op, t.tolist())
    # in place and zero-copy: the tensor's own memory is written
    t = torch.tensor(data_of(rank, (1000,)))
    address = t.data_ptr()
    dist.all_reduce(t)
    assert t.data_ptr() == address
    close(t.numpy(), np.sum(everyone((1000,)), axis=0))
    # a non-contiguous tensor: copied in, copied back, its layout kept
    xs = everyone((4, 3), seed=7)
    t = noncontiguous(xs[rank])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    assert not t.is_contiguous()
    close(t.numpy(), np.max(xs, axis=0))
    # async: a work handle; the result is there after wait()
    xs = everyone((64,), seed=9)
    t = torch.tensor(xs[rank].copy())
    work = dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True)
    assert work.wait() is True and work.is_completed()
    close(t.numpy(), np.mean(xs, axis=0))
    tt = noncontiguous(np.stack([xs[rank], 2 * xs[rank]]))
    work = dist.all_reduce(tt, async_op=True)
    while not work.is_completed():
        pass
    close(tt.numpy(), np.sum(np.stack([np.stack([x, 2 * x]) for x in xs]), axis=0))

    for src in range(world):
        xs = everyone((2, 3), seed=20 + src)
        t = torch.tensor(xs[rank].copy())
        dist.broadcast(t, src=src)
        close(t.numpy(), xs[src])
    t = noncontiguous(everyone((3, 2), seed=30)[rank])
    dist.broadcast(t, src=1, async_op=True).wait()
    close(t.numpy(), everyone((3, 2), seed=30)[1])

    xs = everyone((2, 3), seed=40)
    outs = [torch.zeros(2, 3, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(outs, noncontiguous(xs[rank]))
    for r in range(world):
        close(outs[r].numpy(), xs[r])
    out = torch.zeros(world * 2, 3, dtype=torch.float64)
    address = out.data_ptr()
    dist.all_gather_into_tensor(out, torch.tensor(xs[rank].copy()))
    close(out.numpy(), np.concatenate(xs))
    assert out.data_ptr() == address
    out = noncontiguous(np.zeros((3, world * 2)))                 # (world*2, 3), transposed memory
    dist.all_gather_into_tensor(out, torch.tensor(xs[rank].copy()), async_op=True).wait()
    close(out.numpy().reshape(-1), np.concatenate(xs).reshape(-1))

    for op in (dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX):
        xs = everyone((world * 3,), seed=50)
        out = torch.zeros(3, dtype=torch.float64)
        dist.reduce_scatter_tensor(out, torch.tensor(xs[rank].copy()), op=op)
        close(out.numpy(), definitions[op](xs)[3 * rank:3 * rank + 3])

    for dst in range(world):
        xs = everyone((2,), seed=60 + dst)
        gathered = [torch.zeros(2, dtype=torch.float64) for _ in range(world)] if rank == dst else None
        dist.gather(torch.tensor(xs[rank].copy()), gathered, dst=dst)
        if rank == dst:
            for r in range(world):
                close(gathered[r].numpy(), xs[r])
    for src in range(world):
        xs = everyone((world, 2), seed=70 + src)[src]          # rank src's list: one row per rank
        t = torch.zeros(2, dtype=torch.float64)
        dist.scatter(t, [torch.tensor(x) for x in xs] if rank == src else None, src=src)
        close(t.numpy(), xs[rank])

    # point to point: a ring, then a receive from any rank that says who sent
    right, left = (rank + 1) % world, (rank - 1) % world
    t = torch.zeros(4, dtype=torch.float64)
    work = dist.irecv(t, src=left)
    dist.send(torch.tensor(data_of(rank, (4,), seed=80)), dst=right)
    work.wait()
    close(t.numpy(), data_of(left, (4,), seed=80))
    if rank == 0:
        t = noncontiguous(np.zeros((2, 2)))
        assert dist.recv(t) == 1
        close(t.numpy(), [[1.0, 2.0], [3.0, 4.0]])
    elif rank == 1:
        dist.send(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64), dst=0)
    assert dist.barrier() is None
    dist.barrier(async_op=True).wait()


@scenario
def mismatches(rank, world):
    """Mismatched calls are refused on every rank with both sides named; the group stays usable."""
    cases = [
        (lambda: dist.all_reduce(torch.ones(3 + rank)), "all_reduce(shape=[3], numel=3, dtype=float32, op=SUM), "
         "but Rank 1 is running collective: all_reduce(shape=[4], numel=4, dtype=float32, op=SUM)"),
        (lambda: dist.all_reduce(torch.ones(3, dtype=torch.float64 if rank else torch.float32)), "dtype=float64"),
        (lambda: dist.all_reduce(torch.ones(3), op=dist.ReduceOp.MAX if rank else dist.ReduceOp.SUM), "op=MAX"),
        (lambda: dist.broadcast(torch.ones(3), src=rank), "root=1"),
        (lambda: dist.all_reduce(torch.ones(2)) if rank == 0 else dist.broadcast(torch.ones(2), src=0),
         "Rank 0 is running collective: all_reduce"),
    ]
    for call, expected in cases:
        try:
            call()
        except RuntimeError as e:
            assert str(e).startswith("Detected mismatch between collectives on ranks."), e
            assert expected in str(e), (expected, str(e))
        else:
            raise AssertionError("mismatch not detected")
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [world, world]
    if rank == 0:
        try:
            dist.recv(torch.zeros(3), src=1)
        except RuntimeError as e:
            assert "recv: the tensor holds 3 elements, but rank 1 sent 2" in str(e), e
        else:
            raise AssertionError("short message not detected")
    elif rank == 1:
        dist.send(torch.ones(2), dst=0)
    for call, kind, text in [
        (lambda: dist.send(torch.ones(1), dst=rank), ValueError,
         "Invalid destination rank: destination rank should not be the same as the rank of the current process."),
        (lambda: dist.broadcast(torch.ones(1), src=world), ValueError, f"Invalid source rank {world}"),
        (lambda: dist.all_reduce([1.0]), TypeError, "Expected parameter `tensor` of type torch.Tensor"),
        (lambda: dist.all_gather_into_tensor(torch.zeros(3), torch.zeros(2)), ValueError,
         "output tensor size must be equal to world_size times input tensor size"),
        (lambda: dist.init_process_group("mpi"), ValueError, "trying to initialize the default process group twice!"),
    ]:
        try:
            call()
        except kind as e:
            assert text in str(e), (text, str(e))
        else:
            raise AssertionError(text)
    dist.barrier()


@scenario
def timeout(rank, world):
    """Rank 1 leaves before the collective: rank 0's all-reduce fails after the timeout, not hangs."""
    if rank == 1:
        sys.exit(0)
    started = time.monotonic()
    try:
        dist.all_reduce(torch.ones(4))
    except dist.DistBackendError as e:
        waited = time.monotonic() - started
        assert "Watchdog caught collective operation timeout: WorkMPI(" in str(e) and "Timeout(ms)=2000" in str(e), e
        assert 2.0 <= waited < 30, waited
        print(f"OK timeout rank {rank} after {waited:.1f} s: {e}", flush=True)
        try:
            dist.all_reduce(torch.ones(1))
        except dist.DistBackendError as e2:
            assert "unusable after an earlier failure" in str(e2)
        raise                             # the job ends with the error (and an MPI abort at exit)
    raise AssertionError("no timeout")


@scenario
def crash(rank, world):
    """Rank 1 dies of an exception: it aborts the job, so rank 0 stops at once, long before
    its timeout (60 s), instead of waiting in the all-reduce."""
    if rank == 1:
        raise RuntimeError("rank 1 crashed")
    dist.all_reduce(torch.ones(4))
    raise AssertionError("the all-reduce completed without rank 1")


# -- DistributedDataParallel ---------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, sizes=(6, 16, 16, 3)):
        super().__init__()
        self.layers = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.Tanh())][:-1])

    def forward(self, x):
        return self.layers(x)


def batch(step, n=8, features=6, classes=3):
    rng = np.random.default_rng(step)
    return (torch.tensor(rng.standard_normal((n, features))), torch.tensor(rng.integers(0, classes, n)))


def params_of(module):
    return [p.detach().numpy().copy() for p in module.parameters()]


@scenario
def ddp_matches_one_process(rank, world):
    """2 ranks on half batches give, step for step, the parameters of one process on the full batch."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(rank)                          # different on purpose: DDP copies rank 0's
    model = MLP()
    ddp = DDP(model, bucket_cap_mb=0.0005)          # several buckets
    assert len(ddp.reducer.buckets) > 1
    reference = copy.deepcopy(model)                 # one process, full batch
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    ranks_agree(params_of(model))
    for step in range(6):
        x, y = batch(step)
        share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x[share]), y[share]).backward()
        opt.step()
        ref_opt.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            close(p.grad.numpy(), q.grad.numpy(), rtol=1e-11)
        ref_opt.step()
        for a, b in zip(params_of(model), params_of(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    ranks_agree(params_of(model))
    keys = list(ddp.state_dict())
    assert keys == ["module." + k for k in model.state_dict()] and ddp.module is model, keys


def ranks_agree(arrays):
    for a in arrays:
        t = torch.tensor(a.copy())
        top = t.clone()
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        assert np.array_equal(t.numpy(), top.numpy())


@scenario
def ddp_buckets_overlap(rank, world):
    """Buckets hold parameters in reverse order, one dtype, capped; the first bucket's
    all-reduce starts while backward still has layers to go; .grad is the average on return."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = MLP((64, 256, 256, 256, 10))
    first = list(model.parameters())[0]
    ddp = DDP(model, bucket_cap_mb=0.3)
    buckets = ddp.reducer.buckets
    order = [p for b in buckets for p in b.params]
    assert order == list(reversed(list(model.parameters())))
    sizes = [b.flat.nbytes for b in buckets]
    assert len(buckets) >= 3 and all(s < 0.3 * 2**20 + 256 * 256 * 8 for s in sizes), sizes
    seen = {}
    first.register_post_accumulate_grad_hook(lambda p: seen.setdefault("last_grad", time.perf_counter()))
    x, y = batch(rank, n=32, features=64, classes=10)
    loss = nn.functional.cross_entropy(ddp(x), y)
    loss.backward()
    ended = time.perf_counter()
    launches = ddp.reducer.launch_times
    assert len(launches) == len(buckets)
    assert launches[0] < seen["last_grad"] <= ended, (launches, seen, ended)
    # the average: every rank's local gradient, summed, over the world
    local = copy.deepcopy(model)
    for p in local.parameters():
        p.grad = None
    nn.functional.cross_entropy(local(x), y).backward()
    for p, q in zip(model.parameters(), local.parameters()):
        everyone = q.grad.clone()
        dist.all_reduce(everyone)
        close(p.grad.numpy(), everyone.numpy() / world)


@scenario
def ddp_no_sync(rank, world):
    """Inside no_sync gradients stay local; the next backward averages the accumulated sums."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = MLP()
    ddp = DDP(model)
    reference = copy.deepcopy(model)
    x0, y0 = batch(10 + rank)
    x1, y1 = batch(20 + rank)
    with ddp.no_sync():
        nn.functional.cross_entropy(ddp(x0), y0).backward()
    local = params_grads(model)
    nn.functional.cross_entropy(reference(x0), y0).backward()
    for a, b in zip(local, params_grads(reference)):
        close(a, b)                                   # no communication happened
    nn.functional.cross_entropy(ddp(x1), y1).backward()
    nn.functional.cross_entropy(reference(x1), y1).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        total = q.grad.clone()
        dist.all_reduce(total)
        close(p.grad.numpy(), total.numpy() / world)


def params_grads(module):
    return [p.grad.numpy().copy() for p in module.parameters()]


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head_a = nn.Linear(4, 2)
        self.head_b = nn.Linear(4, 2)
        self.never = nn.Linear(4, 2)

    def forward(self, x, use_b):
        h = self.body(x).tanh()
        return self.head_b(h) if use_b else self.head_a(h)


@scenario
def ddp_unused_parameters(rank, world):
    """find_unused_parameters: rank 0 uses head_a, rank 1 head_b; each head's gradient is the
    average with zeros from the rank that did not use it; a layer no rank uses keeps grad None.
    Without it, the next forward names the parameters that got no gradient."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = TwoHeads()
    ddp = DDP(model, find_unused_parameters=True)
    reference = copy.deepcopy(model)
    x = torch.tensor(data_of(rank, (5, 4)))
    ddp(x, rank == 1).sum().backward()
    reference(x, rank == 1).sum().backward()
    for name, p in model.named_parameters():
        q = reference.get_parameter(name) if hasattr(reference, "get_parameter") else dict(reference.named_parameters())[name]
        if name.startswith("never"):
            assert p.grad is None, name
            continue
        local = q.grad.clone() if q.grad is not None else torch.zeros_like(q)
        dist.all_reduce(local)
        close(p.grad.numpy(), local.numpy() / world)
    model2 = TwoHeads()
    strict = DDP(model2)
    strict(x, False).sum().backward()
    try:
        strict(x, False)
    except RuntimeError as e:
        assert str(e).startswith("Expected to have finished reduction in the prior iteration"), e
        assert "find_unused_parameters=True" in str(e)
    else:
        raise AssertionError("unused parameters not reported")


@scenario
def ddp_construction(rank, world):
    """Buffers come from rank 0; a model that differs across ranks is refused."""
    torch.set_default_dtype(torch.float64)
    model = MLP()
    model.register_buffer("running", torch.full((3,), float(rank)))
    ddp = DDP(model)
    assert model.running.tolist() == [0.0, 0.0, 0.0]
    try:
        DDP(MLP((6, 16 + rank, 3)))
    except RuntimeError as e:
        assert "DDP expects same model across all ranks" in str(e), e
    else:
        raise AssertionError("different models not refused")
    try:
        DDP(MLP((6, 3)) if rank else MLP((6, 4, 3)))
    except RuntimeError as e:
        assert "DDP expects same model across all ranks, but Rank" in str(e) and "inconsistent" in str(e), e
    else:
        raise AssertionError("different parameter counts not refused")
    ddp(torch.ones(2, 6)).sum().backward()
    mixed_dtypes(rank, world)


class Mixed(nn.Module):
    """A float64 and a float32 branch: their gradients go in buckets of their own dtype."""
    def __init__(self):
        super().__init__()
        self.wide = nn.Linear(6, 3).double()
        self.narrow = nn.Linear(6, 3).float()

    def forward(self, x):
        return self.wide(x).sum() + self.narrow(x.to(torch.float32)).sum().to(torch.float64)


def mixed_dtypes(rank, world):
    torch.manual_seed(0)
    model = Mixed()
    ddp = DDP(model, bucket_cap_mb=0.0001)
    assert sorted({b.flat.dtype.name for b in ddp.reducer.buckets}) == ["float32", "float64"]
    reference = copy.deepcopy(model)
    x = torch.tensor(data_of(rank, (4, 6)))
    (ddp(x) * (rank + 1)).backward()
    (reference(x) * (rank + 1)).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        total = q.grad.clone()
        dist.all_reduce(total)
        assert p.grad.dtype == q.grad.dtype
        close(p.grad.numpy(), total.numpy() / world, rtol=1e-6 if p.dtype == torch.float32 else 1e-12)


def main():
    name = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 60
    dist.init_process_group("mpi", timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    SCENARIOS[name](rank, world)
    dist.destroy_process_group()
    print(f"OK {name} rank {rank}", flush=True)


if __name__ == "__main__":
    main()
