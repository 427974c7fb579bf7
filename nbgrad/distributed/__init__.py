"""Distributed communication over MPI, with PyTorch's ``torch.distributed`` names.

Launch one process per rank with ``mpiexec -n 4 python train.py`` (or ``srun`` on a
cluster), call ``init_process_group("mpi")``, then use the collectives on tensors.
``nbgrad.nn.parallel.DistributedDataParallel`` builds data-parallel training on them.
"""
from .process_group import (DistBackendError, DistError, barrier, default_pg_timeout, destroy_process_group,
                            get_backend, get_rank, get_world_size, init_process_group, is_available,
                            is_initialized)
from .collectives import (ReduceOp, Work, all_gather, all_gather_into_tensor, all_reduce, broadcast, gather,
                          irecv, isend, recv, reduce_scatter_tensor, scatter, send)

__all__ = ["is_available", "init_process_group", "is_initialized", "get_rank", "get_world_size", "get_backend",
           "barrier", "destroy_process_group", "default_pg_timeout", "DistError", "DistBackendError",
           "ReduceOp", "Work", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor",
           "reduce_scatter_tensor", "gather", "scatter", "send", "recv", "isend", "irecv"]
