"""Gradient averaging in buckets, overlapped with backward (PyTorch's ``Reducer``).

Parameters are packed, in reverse order of registration (about the order backward produces
their gradients), into flat buckets of one dtype, each up to ``bucket_cap_mb`` (by default
25 MB, and 1 MB for the first, so that communication starts early: PyTorch's choice). A hook on every parameter's gradient accumulation copies the gradient into
its bucket; when a bucket's last gradient is in, the bucket's non-blocking all-reduce starts,
while backward goes on with the layers below. Buckets are launched in index order on every
rank, so MPI sees the same sequence of collectives everywhere, on a communicator of their own,
so that a user's collectives between forward and backward do not interleave with them. When
the last bucket is launched, the hook waits for all of them and writes ``sum / world_size``
into every ``.grad``: ``backward()`` returns with the average.
"""
import time

import numpy as np

from ...autograd.graph import AccumulateGrad
from ...distributed.collectives import ReduceOp, Work
from ...tensor import Tensor

__all__ = ["Reducer"]

FIRST_BUCKET_BYTES = 1024 * 1024


class _Bucket:
    __slots__ = ("index", "params", "offsets", "flat", "pending", "work")

    def __init__(self, index, params, dtype):
        self.index = index
        self.params = params
        self.offsets = np.cumsum([0] + [p._data.size for p in params]).tolist()
        self.flat = np.zeros(self.offsets[-1], dtype)   # the one allocation: reused every step
        self.pending = len(params)
        self.work = None


def assign_buckets(params, bucket_cap_bytes, first_bucket_bytes):
    """Lists of parameter indices, one per bucket: ``params`` in reverse order, one dtype per
    bucket, a bucket closed once it reaches its limit, buckets ordered by their first
    parameter (PyTorch's ``_compute_bucket_assignment_by_size`` on the reversed list)."""
    buckets, open_ = [], {}
    limits = {}
    for i in reversed(range(len(params))):
        dtype = params[i]._data.dtype
        indices, size = open_.get(dtype, ([], 0))
        indices.append(i)
        size += params[i]._data.nbytes
        limit = limits.setdefault(dtype, first_bucket_bytes)
        if size >= limit:
            buckets.append(indices)
            limits[dtype] = bucket_cap_bytes
            indices, size = [], 0
        open_[dtype] = (indices, size)
    buckets += [indices for indices, _ in open_.values() if indices]
    return sorted(buckets, key=lambda indices: -indices[0])    # by where they start in reverse order


class Reducer:
    def __init__(self, pg, comm, params, bucket_cap_bytes, first_bucket_bytes, find_unused_parameters):
        self.pg, self.comm = pg, comm
        self.params = params
        self.find_unused = find_unused_parameters
        self.buckets = [_Bucket(b, [params[i] for i in indices], params[indices[0]]._data.dtype)
                        for b, indices in enumerate(assign_buckets(params, bucket_cap_bytes, first_bucket_bytes))]
        self.where = {}                   # id(param) -> (bucket, slot)
        for bucket in self.buckets:
            for slot, p in enumerate(bucket.params):
                self.where[id(p)] = (bucket, slot)
        self.ready = np.zeros(len(params), np.bool_)
        self.used = np.zeros(len(params), np.uint8)
        self.index = {id(p): i for i, p in enumerate(params)}
        self.expect_hooks = False         # set by a forward that will be reduced
        self.started = False              # a gradient of this iteration came in
        self.next_bucket = 0
        self.launch_times = []            # when each bucket's all-reduce started (for tests and tuning)
        self.handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    # -- per iteration ------------------------------------------------------------------------------
    def prepare_for_backward(self, outputs):
        if self.started:
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one. This "
                "error indicates that your module has parameters that were not used in producing loss. You can "
                "enable unused parameter detection by passing the keyword argument `find_unused_parameters=True` "
                "to `torch.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function "
                "outputs participate in calculating loss.\nParameter indices which did not receive grad for "
                f"rank {self.pg.rank}: {' '.join(str(i) for i in np.nonzero(~self.ready)[0])}")
        for bucket in self.buckets:      # launched by the last forward (unused parameters), never awaited
            if bucket.work is not None:
                bucket.work.wait()
        self.expect_hooks = True
        self.ready[:] = False
        self.used[:] = 0
        self.next_bucket = 0
        self.launch_times = []
        for bucket in self.buckets:
            bucket.pending = len(bucket.params)
            bucket.work = None
        if self.find_unused:
            reached = _leaves_reached(outputs)
            for i, p in enumerate(self.params):
                if id(p) not in reached:
                    self._mark_ready(i, p, None)

    def _grad_ready(self, param):
        if not self.expect_hooks:
            return                        # no_sync, or a backward of no DDP forward: local gradients
        i = self.index[id(param)]
        if self.ready[i]:
            raise RuntimeError(
                f"Expected to mark a variable ready only once. This error is caused by parameter index {i} "
                "being marked ready twice in one iteration (a second backward through the same forward, or a "
                "parameter that find_unused_parameters found unused but that got a gradient).")
        self.started = True
        self.used[i] = 1
        self._mark_ready(i, param, param.grad._data)
        for bucket in self.buckets[:self.next_bucket]:   # drive MPI's progress on the ones in flight
            if bucket.work is not None and not bucket.work._done:
                bucket.work.is_completed()

    def _mark_ready(self, i, param, grad):
        self.ready[i] = True
        bucket, slot = self.where[id(param)]
        view = bucket.flat[bucket.offsets[slot]:bucket.offsets[slot + 1]]
        if grad is None:
            view[...] = 0
        else:
            np.copyto(view.reshape(grad.shape), grad)
        bucket.pending -= 1
        while self.next_bucket < len(self.buckets) and self.buckets[self.next_bucket].pending == 0:
            launch = self.buckets[self.next_bucket]
            launch.work = self._all_reduce(launch.flat)
            self.launch_times.append(time.perf_counter())
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self._finalize()

    def _all_reduce(self, array, op=ReduceOp.SUM):
        req = self.comm.Iallreduce(self.pg.MPI.IN_PLACE, array, self.pg.MPI.SUM if op == ReduceOp.SUM
                                   else self.pg.MPI.MAX)
        return Work(self.pg, [req], "ALLREDUCE", array.size, array.size, keep=(array,))

    def _finalize(self):
        """Wait for every bucket, then ``.grad = sum / world_size``. A parameter no rank used
        keeps its ``.grad`` as it was (PyTorch's global unused map)."""
        self.expect_hooks = self.started = False
        used = self.used
        if self.find_unused:
            self._all_reduce(used, ReduceOp.MAX).wait()
        world = self.pg.size
        for bucket in self.buckets:
            bucket.work.wait()
            for slot, p in enumerate(bucket.params):
                if self.find_unused and not used[self.index[id(p)]]:
                    continue
                view = bucket.flat[bucket.offsets[slot]:bucket.offsets[slot + 1]].reshape(p._data.shape)
                if p.grad is None:
                    p.grad = Tensor._wrap(np.empty_like(p._data))
                np.divide(view, world, out=p.grad._data)
                p.grad._version_counter.value += 1

    def remove_hooks(self):
        for handle in self.handles:
            handle.remove()


def _leaves_reached(outputs):
    """``id`` of every leaf that backward from the tensors in ``outputs`` would reach."""
    tensors = list(_tensors(outputs))
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    leaves = {id(t) for t in tensors if t.grad_fn is None and t.requires_grad}
    seen = set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn) is AccumulateGrad:
            leaves.add(id(fn.variable))
            continue
        stack.extend(n for n, _ in fn.next_functions if n is not None)
    return leaves


def _tensors(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)
