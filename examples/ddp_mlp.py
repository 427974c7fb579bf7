"""Data-parallel training of a small MLP with ``DistributedDataParallel`` over MPI.

    python examples/ddp_mlp.py                  # one process, batches of 60
    mpiexec -n 2 python examples/ddp_mlp.py     # two ranks, each 30 of every batch of 60
    mpiexec -n 4 python examples/ddp_mlp.py     # four ranks, 15 each

All three print the same losses and the same final parameter checksum (float64; equal up to
rounding): ``DistributedSampler`` deals rank r the positions r, r + N, r + 2N, ... of the
epoch's permutation, so the ranks' i-th local batches together are the one-process run's
i-th batch, and DDP averages the ranks' gradients of their mean losses, which is the
gradient of the whole batch's mean loss. Without mpi4py it runs as one process.
"""
import argparse

import numpy as np

import nbgrad as torch
import nbgrad.distributed as dist
from nbgrad import nn
from nbgrad.nn.parallel import DistributedDataParallel
from nbgrad.utils.data.distributed import DistributedSampler


def spirals(n=1200, classes=3, seed=0):
    """``n`` points on ``classes`` noisy interleaved spiral arms: inputs (n, 2), labels (n,)."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % classes
    radius = rng.uniform(0.1, 1.0, n)
    angle = label * 2 * np.pi / classes + radius * 4 + rng.normal(0, 0.2, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return torch.tensor(x), torch.tensor(label)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=60, help="the global batch, split over the ranks")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)

    distributed = dist.is_available()
    if distributed:
        dist.init_process_group("mpi")           # rank and world size come from mpiexec / srun
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {world} ranks")
    local_batch = args.batch_size // world

    x, y = spirals()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))
    if distributed:
        model = DistributedDataParallel(model)   # copies rank 0's parameters to every rank
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sampler = DistributedSampler(range(len(x)), num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)                 # a new shuffle each epoch, the same on every rank
        indices = torch.tensor(list(sampler))
        total = torch.zeros(2)                   # summed loss, correct predictions
        for start in range(0, len(indices), local_batch):
            batch = indices[start:start + local_batch]
            optimizer.zero_grad()
            logits = model(x[batch])
            loss = nn.functional.cross_entropy(logits, y[batch])
            loss.backward()                      # .grad is the average over the ranks here
            optimizer.step()
            with torch.no_grad():
                total += torch.stack([loss * len(batch), (logits.argmax(1) == y[batch]).sum().to(torch.float64)])
        if distributed:
            dist.all_reduce(total)               # the whole epoch's figures, for rank 0 to print
        if rank == 0:
            seen = len(indices) * world
            print(f"epoch {epoch}: loss {total[0].item() / seen:.10f}, accuracy {total[1].item() / seen:.3f}")
    if rank == 0:
        checksum = sum(float(p.detach().sum().item()) for p in model.parameters())
        print(f"{world} process(es): parameter checksum {checksum:.12f}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
