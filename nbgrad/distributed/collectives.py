"""Collectives on tensors, in place, through the buffer protocol.

A tensor's data is a NumPy array: a contiguous one is handed to MPI as it is (no copy); a
non-contiguous one is copied into a contiguous buffer, and results are copied back when the
operation completes. Every operation is MPI's non-blocking call wrapped in a ``Work``;
``async_op=False`` waits for it at once. Waiting polls against the group's timeout.

Before a collective, the ranks exchange a fingerprint (operation, dtype, shape, root, reduce
op: twelve integers) and refuse to run mismatched calls with a message naming both sides.
MPI itself would truncate, read garbage or hang. Point-to-point receives check the count
MPI reports instead.
"""
import os
import time
from enum import IntEnum

import numpy as np

from ..tensor import Tensor
from .process_group import DistBackendError, _check_group

__all__ = ["ReduceOp", "Work", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor",
           "reduce_scatter_tensor", "gather", "scatter", "send", "recv", "isend", "irecv"]


class ReduceOp(IntEnum):
    """How ``all_reduce`` and ``reduce_scatter_tensor`` combine (PyTorch's numbering)."""
    SUM = 0
    AVG = 1
    PRODUCT = 2
    MIN = 3
    MAX = 4
    BAND = 5
    BOR = 6
    BXOR = 7


def _mpi_op(MPI, op, dtype=None):
    op = ReduceOp(op)
    if dtype is not None and dtype.kind == "b":         # MPI reduces booleans only logically
        return MPI.LAND if op in (ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.BAND) else MPI.LOR
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND,
            ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR}[op]


class Work:
    """A started operation. ``wait()`` blocks (up to the group's timeout) and finishes it:
    copies a non-contiguous result back, divides an average. ``is_completed()`` asks
    without blocking."""

    def __init__(self, pg, requests, op_type, numel_in, numel_out, finish=None, keep=(), statuses=None):
        self._pg = pg
        self._requests = requests
        self._op_type, self._numel_in, self._numel_out = op_type, numel_in, numel_out
        self._finish = finish
        self._keep = keep                 # buffers MPI reads or writes until completion
        self._statuses = statuses
        self._seq = pg.seq
        pg.seq += 1
        self._started = time.monotonic()
        self._done = False
        pg.in_flight.add(self)            # a dropped handle must not free what MPI still writes

    def __repr__(self):
        return self._describe()

    def _describe(self):
        return (f"WorkMPI(SeqNum={self._seq}, OpType={self._op_type}, NumelIn={self._numel_in}, "
                f"NumelOut={self._numel_out}, Timeout(ms)={int(self._pg.timeout * 1000)})")

    def is_completed(self):
        if not self._done:
            try:
                done = self._pg.MPI.Request.Testall(self._requests, self._statuses)
            except self._pg.MPI.Exception as e:
                raise DistBackendError(f"MPI error in {self._describe()}: {e.Get_error_string()}") from None
            if done:
                self._complete()
        return self._done

    def is_success(self):
        return self._done

    def wait(self, timeout=None):
        if not self._done:
            if timeout is None:
                self._pg.wait(self._requests, self._started, self._describe, statuses=self._statuses)
            else:
                seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
                self._pg.wait(self._requests, time.monotonic(), self._describe, seconds, self._statuses)
            self._complete()
        return True

    def _complete(self):
        self._done = True
        self._pg.in_flight.discard(self)
        finish, self._finish, self._keep = self._finish, None, ()
        if finish is not None:
            finish()


def _run(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


# -- buffers ----------------------------------------------------------------------------------------
def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise TypeError(f"Invalid function argument. Expected parameter `{name}` of type torch.Tensor\n"
                        f"             but got {type(t)} instead.")


def _check_list(ts, name):
    if not isinstance(ts, list) or not all(isinstance(t, Tensor) for t in ts):
        raise TypeError(f"Invalid function argument. Expected parameter `{name}` of type List[torch.Tensor]\n"
                        f"             but got {type(ts)} instead.")


def _source(t):
    """The array MPI reads: the tensor's own when contiguous, else a contiguous copy."""
    data = t._data
    return data if data.flags.c_contiguous else np.ascontiguousarray(data)


def _written(tensors, bufs, divide=None):
    """What ends an operation that wrote ``bufs`` for ``tensors``: divide an average, copy
    into a tensor whose array is not the buffer itself, and bump the version counters."""
    def finish():
        for t, buf in zip(tensors, bufs):
            if divide is not None and buf.dtype.kind != "b":
                np.divide(buf, divide, out=buf, casting="unsafe")
            if buf is not t._data:
                t._data[...] = buf.reshape(t._data.shape)
            t._version_counter.value += 1
    return finish


def _flat_target(t):
    """A contiguous array MPI may write the tensor's values into: its own when possible."""
    data = t._data
    return data if data.flags.c_contiguous else np.empty(data.shape, data.dtype)


def _check_rank(pg, rank, kind):
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < pg.size:
        raise ValueError(f"Invalid {kind} rank {rank}: the world has ranks 0 to {pg.size - 1}")


# -- mismatch detection -----------------------------------------------------------------------------
_OPS = ["barrier", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor",
        "reduce_scatter_tensor", "gather", "scatter"]
_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
           "float16", "float32", "float64", "complex64", "complex128"]
_FIELDS = 12


_DTYPE_CODES = {name: i for i, name in enumerate(_DTYPES)}


CHECK_COLLECTIVES = os.environ.get("NBGRAD_DISTRIBUTED_CHECKS", "1") != "0"


def _fingerprint(pg, op, array=None, root=-1, reduce_op=-1):
    """Exchange what each rank is about to run; raise on every rank if they differ. Kept
    lean (reused arrays, a byte comparison): it runs before every collective, one more
    message latency each (about 6 us on one machine); ``NBGRAD_DISTRIBUTED_CHECKS=0`` in
    the environment turns it off (PyTorch checks only with TORCH_DISTRIBUTED_DEBUG=DETAIL)."""
    if not CHECK_COLLECTIVES:
        return
    buffers = pg.__dict__.get("_fingerprints")
    if buffers is None:
        buffers = pg._fingerprints = (np.empty(_FIELDS, np.int64), np.empty((pg.size, _FIELDS), np.int64))
    mine, everyone = buffers
    mine.fill(-1)
    mine[0] = _OPS.index(op)
    mine[2] = root
    mine[3] = reduce_op
    if array is not None:
        mine[1] = _DTYPE_CODES.get(array.dtype.name, 99)
        mine[4] = array.ndim
        mine[5] = array.size
        shape = array.shape[:_FIELDS - 6]
        mine[6:6 + len(shape)] = shape
    request = pg.comm.Iallgather(mine, everyone)
    if not request.Test():
        started = time.monotonic()
        pg.wait([request], started, lambda: f"WorkMPI(SeqNum={pg.seq}, OpType=ALLGATHER(fingerprint of {op}), "
                                            f"Timeout(ms)={int(pg.timeout * 1000)})")
    if everyone.tobytes() != mine.tobytes() * pg.size:
        differs = np.nonzero((everyone != everyone[0]).any(axis=1))[0]
        other = int(differs[0])
        raise RuntimeError(f"Detected mismatch between collectives on ranks. Rank 0 is running collective: "
                           f"{_describe(everyone[0])}, but Rank {other} is running collective: "
                           f"{_describe(everyone[other])}.")


def _describe(row):
    op = _OPS[row[0]] if 0 <= row[0] < len(_OPS) else "?"
    parts = []
    if row[1] >= 0:
        shape = [int(n) for n in row[6:6 + min(int(row[4]), _FIELDS - 6)]]
        dtype = _DTYPES[row[1]] if row[1] < len(_DTYPES) else "other"
        parts += [f"shape={shape}", f"numel={int(row[5])}", f"dtype={dtype}"]
    if row[2] >= 0:
        parts.append(f"root={int(row[2])}")
    if row[3] >= 0:
        parts.append(f"op={ReduceOp(int(row[3])).name}")
    return f"{op}({', '.join(parts)})"


# -- collectives --------------------------------------------------------------------------------
def _barrier(pg, async_op):
    _fingerprint(pg, "barrier")
    return _run(Work(pg, [pg.comm.Ibarrier()], "BARRIER", 0, 0), async_op)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine ``tensor`` across ranks with ``op``; every rank gets the result in ``tensor``."""
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    op = ReduceOp(op)
    _fingerprint(pg, "all_reduce", tensor._data, reduce_op=int(op))
    buf = _source(tensor)
    work = _all_reduce_array(pg, buf, op)
    work._finish = _written([tensor], [buf], pg.size if op == ReduceOp.AVG else None)
    return _run(work, async_op)


def _all_reduce_array(pg, array, op=ReduceOp.SUM):
    """All-reduce a contiguous array in place: no fingerprint, no finish (DDP's buckets)."""
    MPI = pg.MPI
    req = pg.comm.Iallreduce(MPI.IN_PLACE, array, _mpi_op(MPI, op, array.dtype))
    return Work(pg, [req], "ALLREDUCE", array.size, array.size, keep=(array,))


def broadcast(tensor, src=None, group=None, async_op=False):
    """Every rank's ``tensor`` gets rank ``src``'s values."""
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    src = 0 if src is None else src
    _check_rank(pg, src, "source")
    _fingerprint(pg, "broadcast", tensor._data, root=src)
    buf = _source(tensor)
    work = Work(pg, [pg.comm.Ibcast(buf, root=src)], "BROADCAST", buf.size, buf.size, keep=(buf,))
    work._finish = _written([tensor], [buf])
    return _run(work, async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[r]`` gets rank r's ``tensor`` (the same shape on every rank)."""
    _check_list(tensor_list, "tensor_list")
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    _check_outputs(pg, tensor_list, tensor, "tensor_list")
    _fingerprint(pg, "all_gather", tensor._data)
    send = _source(tensor)
    out = np.empty((pg.size,) + send.shape, send.dtype)
    work = Work(pg, [pg.comm.Iallgather(send, out)], "ALLGATHER", send.size, out.size, keep=(send, out))
    work._finish = _written(tensor_list, list(out))
    return _run(work, async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Rank r's ``input_tensor`` fills the r-th slice of ``output_tensor``'s flat memory."""
    _check_tensor(output_tensor, "output_tensor")
    _check_tensor(input_tensor, "input_tensor")
    pg = _check_group(group)
    _check_sizes(output_tensor, input_tensor, pg.size * input_tensor._data.size,
                 "output tensor size must be equal to world_size times input tensor size")
    _fingerprint(pg, "all_gather_into_tensor", input_tensor._data)
    send, out = _source(input_tensor), _flat_target(output_tensor)
    work = Work(pg, [pg.comm.Iallgather(send, out)], "_ALLGATHER_BASE", send.size, out.size, keep=(send, out))
    work._finish = _written([output_tensor], [out])
    return _run(work, async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input`` across ranks with ``op``; rank r gets the r-th slice of the result."""
    _check_tensor(output, "output")
    _check_tensor(input, "input")
    pg = _check_group(group)
    op = ReduceOp(op)
    _check_sizes(input, output, pg.size * output._data.size,
                 "input tensor must be the same size as output size times world size")
    _fingerprint(pg, "reduce_scatter_tensor", output._data, reduce_op=int(op))
    send, out = _source(input), _flat_target(output)
    req = pg.comm.Ireduce_scatter_block(send, out, _mpi_op(pg.MPI, op, send.dtype))
    work = Work(pg, [req], "_REDUCE_SCATTER_BASE", send.size, out.size, keep=(send, out))
    work._finish = _written([output], [out], pg.size if op == ReduceOp.AVG else None)
    return _run(work, async_op)


def gather(tensor, gather_list=None, dst=None, group=None, async_op=False):
    """Rank ``dst``'s ``gather_list[r]`` gets rank r's ``tensor``."""
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    dst = 0 if dst is None else dst
    _check_rank(pg, dst, "destination")
    if pg.rank == dst:
        if not gather_list:
            raise ValueError("Argument ``gather_list`` must be specified on destination rank.")
        _check_list(gather_list, "gather_list")
        _check_outputs(pg, gather_list, tensor, "gather_list")
    elif gather_list:
        raise ValueError("Argument ``gather_list`` must NOT be specified on non-destination ranks.")
    _fingerprint(pg, "gather", tensor._data, root=dst)
    send = _source(tensor)
    out = np.empty((pg.size,) + send.shape, send.dtype) if pg.rank == dst else None
    req = pg.comm.Igather(send, out, root=dst)
    work = Work(pg, [req], "GATHER", send.size, send.size * pg.size, keep=(send, out))
    if out is not None:
        work._finish = _written(gather_list, list(out))
    return _run(work, async_op)


def scatter(tensor, scatter_list=None, src=None, group=None, async_op=False):
    """Rank r's ``tensor`` gets rank ``src``'s ``scatter_list[r]``."""
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    src = 0 if src is None else src
    _check_rank(pg, src, "source")
    send = None
    if pg.rank == src:
        if not scatter_list:
            raise ValueError("Argument ``scatter_list`` must be specified on source rank.")
        _check_list(scatter_list, "scatter_list")
        _check_outputs(pg, scatter_list, tensor, "scatter_list")
        send = np.stack([t._data for t in scatter_list])
    elif scatter_list:
        raise ValueError("Argument ``scatter_list`` must NOT be specified on non-source ranks.")
    _fingerprint(pg, "scatter", tensor._data, root=src)
    out = _flat_target(tensor)
    req = pg.comm.Iscatter(send, out, root=src)
    work = Work(pg, [req], "SCATTER", out.size * pg.size, out.size, keep=(send, out))
    work._finish = _written([tensor], [out])
    return _run(work, async_op)


def _check_outputs(pg, tensors, like, name):
    if len(tensors) != pg.size:
        raise ValueError(f"Argument ``{name}`` must hold world_size ({pg.size}) tensors, got {len(tensors)}")
    for t in tensors:
        if t._data.shape != like._data.shape or t._data.dtype != like._data.dtype:
            raise ValueError(f"Every tensor of ``{name}`` must have the shape {list(like.shape)} and dtype "
                             f"{like.dtype} of the tensor, got {list(t.shape)} {t.dtype}")


def _check_sizes(big, small, expected, message):
    if big._data.dtype != small._data.dtype:
        raise ValueError(f"the input and output tensors must have the same dtype, got {big.dtype} and {small.dtype}")
    if big._data.size != expected:
        raise ValueError(message)


# -- point to point -----------------------------------------------------------------------------
def isend(tensor, dst=None, group=None, tag=0):
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    _check_peer(pg, dst, "destination")
    buf = _source(tensor)
    return Work(pg, [pg.comm.Isend(buf, dest=dst, tag=tag)], "SEND", buf.size, 0, keep=(buf,))


def send(tensor, dst=None, group=None, tag=0):
    """Send ``tensor`` to rank ``dst`` (which receives it with ``recv``)."""
    isend(tensor, dst, group, tag).wait()


def irecv(tensor, src=None, group=None, tag=0):
    _check_tensor(tensor, "tensor")
    pg = _check_group(group)
    MPI = pg.MPI
    if src is not None:
        _check_peer(pg, src, "source")
    buf = _flat_target(tensor)
    status = MPI.Status()
    req = pg.comm.Irecv(buf, source=MPI.ANY_SOURCE if src is None else src, tag=tag)
    work = Work(pg, [req], "RECV", 0, buf.size, keep=(buf,), statuses=[status])
    write = _written([tensor], [buf])

    def finish():
        got = status.Get_count(MPI._typedict[buf.dtype.char]) if buf.size else 0
        work.source = status.Get_source()
        if got != buf.size:
            raise RuntimeError(f"recv: the tensor holds {buf.size} elements, but rank {work.source} "
                               f"sent {got}")
        write()
    work._finish = finish
    return work


def recv(tensor, src=None, group=None, tag=0):
    """Receive into ``tensor`` from rank ``src`` (any rank when None); returns the sender."""
    work = irecv(tensor, src, group, tag)
    work.wait()
    return work.source


def _check_peer(pg, rank, kind):
    if rank is None:
        raise ValueError(f"Either {'dst' if kind == 'destination' else 'src'} or group_peer must be specified")
    _check_rank(pg, rank, kind)
    if rank == pg.rank:
        raise ValueError(f"Invalid {kind} rank: {kind} rank should not be the same as the rank of the "
                         "current process.")
