"""Data-parallel figures (not an asv suite: it needs ``mpiexec``). Run from the repository root:

    mpiexec -n 2 python -m benchmarks.distributed

1. All-reduce bandwidth for 1 to 100 MB float32 buffers: ``nbgrad.distributed.all_reduce``
   on a tensor (with its fingerprint exchange and polled wait) against mpi4py's raw blocking
   ``Allreduce`` on the same NumPy array, rounds alternating, median of each.
2. Time per training step of an MLP 784-256-10 (float32, SGD, cross-entropy), batch 256:
   one process on the full batch (the other rank idles in a barrier), then every rank on
   its share of the batch under ``DistributedDataParallel``, and the same without the
   gradient all-reduce (``no_sync``) to show what communication adds. Median and best step:
   on a shared, loaded machine the best is the cost of the work, the median that of the
   queue for the cores.

Give each rank its cores: ``OMP_NUM_THREADS=1 mpiexec -n 2 ...`` on 2 cores (BLAS threads;
``init_process_group`` already gives Numba each rank's share). Oversubscribed BLAS threads
made a DDP step 30 times slower here: a rank waiting in a collective and the other's BLAS
threads fight for the cores.
"""
import statistics
import sys
import time

import numpy as np


def _median_time(fn, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bandwidth(dist, comm, MPI, rank, sizes_mb=(1, 4, 16, 64, 100)):
    import nbgrad
    from nbgrad.distributed import collectives
    rows = []
    for mb in sizes_mb:
        n = mb * 2**20 // 4
        tensor = nbgrad.ones(n)
        array = np.ones(n, np.float32)
        rounds = max(5, min(40, 400 // mb))
        ours, unchecked, raw = [], [], []
        for _ in range(rounds):
            for times, check in ((ours, True), (unchecked, False)):
                collectives.CHECK_COLLECTIVES = check
                comm.Barrier()
                start = time.perf_counter()
                dist.all_reduce(tensor)
                times.append(time.perf_counter() - start)
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, array)
            raw.append(time.perf_counter() - start)
        collectives.CHECK_COLLECTIVES = True
        ratio = lambda times: statistics.median(r / o for r, o in zip(raw, times))   # per round: the load drifts
        rows.append((mb, mb / 1024 / min(ours), mb / 1024 / min(raw), ratio(ours), ratio(unchecked)))
    if rank == 0:
        print(f"all-reduce, {comm.Get_size()} ranks, float32: size | nbgrad GB/s | mpi4py Allreduce GB/s (best round "
              "each) | nbgrad / raw (median of per-round ratios) | the same without the mismatch check")
        for mb, ours, raw, ratio, unchecked in rows:
            print(f"  {mb:4d} MB | {ours:6.2f} | {raw:6.2f} | {ratio:6.1%} | {unchecked:6.1%}")
    return rows


def mlp_steps(dist, comm, rank, world, steps=100, batch=256):
    import nbgrad as torch
    from nbgrad import nn
    from nbgrad.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = torch.tensor(rng.integers(0, 10, batch))

    def make():
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    def stepper(model, xs, ys, ctx=None):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            opt.zero_grad()
            if ctx is None:
                nn.functional.cross_entropy(model(xs), ys).backward()
            else:
                with ctx():
                    nn.functional.cross_entropy(model(xs), ys).backward()
            opt.step()
        return step

    single = None
    if rank == 0:
        step = stepper(make(), x, y)
        for _ in range(5):
            step()
        single = [_median_time(step, 1) for _ in range(steps)]
    dist.barrier()                        # the other rank waited here, sleeping between polls
    share = slice(rank * batch // world, (rank + 1) * batch // world)
    ddp = DDP(make())
    step = stepper(ddp, x[share], y[share])
    local = stepper(ddp, x[share], y[share], ddp.no_sync)
    for _ in range(5):
        step()
        local()
    timings = {"ddp": [], "local": []}
    for _ in range(steps):              # alternate: the machine's load drifts
        dist.barrier()                  # polls with sched_yield: a waiting rank leaves the core free
        timings["ddp"].append(_median_time(step, 1))
        dist.barrier()
        timings["local"].append(_median_time(local, 1))
    grad_bytes = sum(p._data.nbytes for p in ddp.parameters())
    if rank == 0:
        show = lambda ts: f"median {statistics.median(ts) * 1e3:7.2f} ms, best {min(ts) * 1e3:6.2f} ms"
        print(f"MLP 784-256-10, batch {batch}, float32 ({grad_bytes / 2**20:.2f} MB of gradients per step), "
              "time per step:")
        print(f"  1 process, batch {batch}:                {show(single)}")
        print(f"  {world} ranks x batch {batch // world}, DDP:           {show(timings['ddp'])}")
        print(f"  {world} ranks x batch {batch // world}, no all-reduce: {show(timings['local'])}")
    return single, timings


def main():
    import nbgrad.distributed as dist
    dist.init_process_group("mpi")
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, world = dist.get_rank(), dist.get_world_size()
    which = sys.argv[1:] or ["bandwidth", "mlp"]
    if "bandwidth" in which:
        bandwidth(dist, comm, MPI, rank)
    if "mlp" in which:
        mlp_steps(dist, comm, rank, world)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
