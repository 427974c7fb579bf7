"""``nbgrad.distributed``, ``DistributedDataParallel`` and ``DistributedSampler``.

The multi-process tests launch ``mpiexec -n 2`` on ``tests/mpi_worker.py`` (one scenario per
run; each rank asserts its results and prints ``OK``). They are skipped only where mpi4py
cannot be imported (``pip install 'nbgrad[mpi]'``)."""
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import nbgrad
import nbgrad.distributed as dist
from nbgrad.nn.parallel.reducer import assign_buckets
from nbgrad.utils.data.distributed import DistributedSampler

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PARENT = str(Path(nbgrad.__file__).resolve().parent.parent)   # the ranks import this nbgrad
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def run_ranks(scenario, timeout=60, ranks=2):
    """Run a worker scenario on ``ranks`` processes; return (exit code, output, seconds)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'nbgrad[mpi]' to run MPI tests")
    mpiexec = _mpiexec()
    assert mpiexec, "mpi4py is installed but no mpiexec was found beside Python or on PATH"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    done = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, str(WORKER), scenario, str(timeout)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.parametrize("scenario", ["collectives", "mismatches", "ddp_matches_one_process", "ddp_buckets_overlap",
                                      "ddp_no_sync", "ddp_unused_parameters", "ddp_construction"])
def test_two_ranks(scenario):
    code, output, _ = run_ranks(scenario)
    assert code == 0, output
    for rank in range(2):
        assert f"OK {scenario} rank {rank}" in output, output


def test_a_rank_that_exits_early_makes_the_other_time_out():
    code, output, seconds = run_ranks("timeout", timeout=2)
    assert "OK timeout rank 0" in output, output
    assert "DistBackendError: Watchdog caught collective operation timeout" in output, output
    assert code != 0 and seconds < 120, (code, seconds)


def test_a_rank_that_crashes_ends_the_job_at_once():
    code, output, seconds = run_ranks("crash", timeout=60)
    assert "RuntimeError: rank 1 crashed" in output and "MPI_Abort" in output, output
    assert code != 0 and seconds < 45, (code, seconds)
    assert "completed without rank 1" not in output and "Watchdog" not in output, output


# -- in this process: no MPI needed --------------------------------------------------------------
@pytest.mark.parametrize("call", [lambda: dist.all_reduce(nbgrad.ones(2)), lambda: dist.broadcast(nbgrad.ones(2), 0),
                                  dist.get_rank, dist.get_world_size, dist.barrier, dist.get_backend,
                                  lambda: dist.all_gather([nbgrad.ones(1)], nbgrad.ones(1))])
def test_calls_before_init_fail_as_pytorch(call):
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="^Default process group has not been initialized, please make sure to "
                                         "call init_process_group.$"):
        call()


def test_other_errors_without_a_group():
    with pytest.raises(AssertionError, match="Process group cannot be None"):
        dist.destroy_process_group()
    with pytest.raises(ValueError, match="Invalid backend: 'nccl'.*MPI only"):
        dist.init_process_group("nccl")
    assert dist.is_available() == (__import__("importlib").util.find_spec("mpi4py") is not None)
    assert not dist.is_initialized()


def test_reduce_ops_are_numbered_as_pytorch():
    for op in dist.ReduceOp:
        assert int(op) == int(getattr(torch.distributed.ReduceOp, op.name)), op


def test_bucket_assignment_matches_pytorch():
    sizes = [100, 300000, 5, 200000, 64, 10, 7, 3]
    dtypes = [nbgrad.float32] * 6 + [nbgrad.float64] * 2
    ours = [nbgrad.zeros(n, dtype=d) for n, d in zip(sizes, dtypes)]
    theirs = list(reversed([torch.zeros(n, dtype=d) for n, d in zip(sizes, [torch.float32] * 6 + [torch.float64] * 2)]))
    for limits in ([2**20, 25 * 2**20], [1000], [800000], [1]):
        expected, _ = torch.distributed._compute_bucket_assignment_by_size(theirs, limits, [False] * len(theirs))
        got = assign_buckets(ours, limits[-1], limits[0])
        assert got == [[len(sizes) - 1 - j for j in bucket] for bucket in expected], limits


# -- DistributedSampler against PyTorch's lists -------------------------------------------------------
CASES = [(n, replicas, drop_last) for n in (0, 1, 7, 10, 12) for replicas in (1, 2, 3, 4) for drop_last in (False, True)
         if n > 0 or drop_last]


@pytest.mark.parametrize("n,replicas,drop_last", CASES)
def test_sampler_shards_equal_pytorch_without_shuffle(n, replicas, drop_last):
    dataset = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(dataset, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(dataset, replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        assert (ours.num_samples, ours.total_size) == (theirs.num_samples, theirs.total_size)


@pytest.mark.parametrize("n,replicas,drop_last", [c for c in CASES if c[0] > 0])
def test_sampler_shuffle_deals_as_pytorch(n, replicas, drop_last):
    """A permutation (nbgrad's generator, not torch.randperm's) dealt exactly as PyTorch deals:
    shards as long as PyTorch's, interleaved they give the permutation padded with its start."""
    dataset = list(range(n))
    for epoch in (0, 1):
        shards = []
        for rank in range(replicas):
            sampler = DistributedSampler(dataset, replicas, rank, shuffle=True, seed=3, drop_last=drop_last)
            sampler.set_epoch(epoch)
            theirs = torch.utils.data.DistributedSampler(dataset, replicas, rank, shuffle=True, seed=3,
                                                         drop_last=drop_last)
            shards.append(list(sampler))
            assert len(shards[-1]) == len(list(theirs)) == len(sampler)
            assert list(sampler) == shards[-1]                          # reproducible
        dealt = [shards[r][i] for i in range(len(shards[0])) for r in range(replicas)]
        if drop_last:
            assert len(set(dealt)) == len(dealt) and set(dealt) <= set(dataset)
        else:
            head = dealt[:n]
            assert sorted(head) == dataset
            padding = dealt[n:]
            assert padding == (head * math.ceil(max(len(padding), 1) / n))[:len(padding)]
    if n >= 5:
        first = DistributedSampler(dataset, 1, 0, seed=3)
        second = DistributedSampler(dataset, 1, 0, seed=3)
        second.set_epoch(1)
        assert list(first) != list(second)                              # a new order each epoch


def test_sampler_errors_as_pytorch():
    for cls in (DistributedSampler, torch.utils.data.DistributedSampler):
        with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
            cls(list(range(4)), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        DistributedSampler(list(range(4)))


def test_example_trains_the_same_on_two_ranks_as_on_one():
    """examples/ddp_mlp.py: the same losses and final parameters (float64, 10 printed digits)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'nbgrad[mpi]' to run MPI tests")
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    script = [sys.executable, str(ROOT / "examples" / "ddp_mlp.py"), "--epochs", "3"]
    one = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    two = subprocess.run([_mpiexec(), "-n", "2"] + script, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    lines_one, lines_two = one.stdout.splitlines(), two.stdout.splitlines()
    assert len(lines_one) == len(lines_two) == 4, (one.stdout, two.stdout)
    assert lines_one[:3] == lines_two[:3]
    assert lines_one[3].split("checksum")[1] == lines_two[3].split("checksum")[1]
    assert lines_two[3].startswith("2 process(es)")
