"""``DistributedDataParallel``: every rank holds the model, runs it on its shard of the batch,
and backward leaves the gradient averaged over all ranks in ``.grad`` (PyTorch's semantics).

Construction checks that every rank has the same parameters (count, shapes, dtypes) and
copies rank 0's parameters and buffers to all. The averaging is the ``Reducer``'s.
"""
import hashlib
from contextlib import contextmanager

import numpy as np

from ...autograd.grad_mode import is_grad_enabled
from ...distributed.collectives import Work
from ...distributed.process_group import _check_group
from ..module import Module
from .reducer import FIRST_BUCKET_BYTES, Reducer

__all__ = ["DistributedDataParallel"]


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training; ``ddp.module`` is the model itself, and
    ``ddp.state_dict()`` names its entries ``module.<name>``, as in PyTorch."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if device_ids is not None or output_device is not None:
            raise ValueError("DistributedDataParallel device_ids and output_device arguments only work with "
                             "single-device/multiple-device GPU modules or CPU modules, but got device_ids "
                             f"{device_ids}, output_device {output_device}, and module parameters {{cpu}}.")
        if gradient_as_bucket_view:
            raise NotImplementedError("gradient_as_bucket_view=True is not built: gradients are copied out of "
                                      "the buckets")
        pg = _check_group(process_group)
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient.")
        self.module = module
        object.__setattr__(self, "process_group", pg)
        object.__setattr__(self, "_comm", pg.comm.Dup())      # DDP's own collectives, never interleaved
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.static_graph = static_graph                        # accepted; the reducer needs no hint
        self.require_backward_grad_sync = True
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 1024 * 1024)
        first_bucket_bytes = FIRST_BUCKET_BYTES if bucket_cap_mb is None else self.bucket_bytes_cap
        self._verify_same_model(params)
        self._broadcast_coalesced(list(module.parameters()) + list(module.buffers()))
        object.__setattr__(self, "reducer", Reducer(pg, self._comm, params, self.bucket_bytes_cap,
                                                    first_bucket_bytes, find_unused_parameters))

    def forward(self, *inputs, **kwargs):
        if self.broadcast_buffers and self.process_group.size > 1:
            buffers = list(self.module.buffers())
            if buffers:
                self._broadcast_coalesced(buffers)
        out = self.module(*inputs, **kwargs)
        if is_grad_enabled() and self.require_backward_grad_sync:
            self.reducer.prepare_for_backward(out)
        else:
            self.reducer.expect_hooks = False
        return out

    @contextmanager
    def no_sync(self):
        """Backward inside this block accumulates local gradients without communication; the
        first synchronised backward after it averages the accumulated sums."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # -- construction ------------------------------------------------------------------------------
    def _collective(self, req, op_type, array):
        Work(self.process_group, [req], op_type, array.size, array.size, keep=(array,)).wait()

    def _verify_same_model(self, params):
        """Every rank must hold the same parameters: gather their count and a digest of their
        shapes and dtypes, and say which rank differs (PyTorch's text where counts differ)."""
        pg = self.process_group
        digest = hashlib.sha256(repr([(tuple(p.shape), p._data.dtype.str) for p in params]).encode()).digest()
        mine = np.array([len(params), int.from_bytes(digest[:7], "little")], np.int64)
        everyone = np.empty((pg.size, 2), np.int64)
        self._collective(self._comm.Iallgather(mine, everyone), "ALLGATHER", everyone)
        for rank in range(pg.size):
            if everyone[rank, 0] != everyone[0, 0]:
                raise RuntimeError(f"DDP expects same model across all ranks, but Rank {pg.rank} has "
                                   f"{len(params)} params, while rank {rank} has inconsistent "
                                   f"{everyone[rank, 0]} params.")
            if everyone[rank, 1] != everyone[0, 1]:
                raise RuntimeError(f"DDP expects same model across all ranks, but the parameters' shapes or "
                                   f"dtypes of rank {rank} differ from rank 0's.")

    def _broadcast_coalesced(self, tensors):
        """Rank 0's values into ``tensors`` on every rank: one broadcast per dtype."""
        by_dtype = {}
        for t in tensors:
            by_dtype.setdefault(t._data.dtype.str, []).append(t)
        for group in by_dtype.values():
            flat = np.concatenate([t._data.reshape(-1) for t in group])
            self._collective(self._comm.Ibcast(flat, root=0), "BROADCAST", flat)
            start = 0
            for t in group:
                n = t._data.size
                t._data[...] = flat[start:start + n].reshape(t._data.shape)
                t._version_counter.value += 1
                start += n
