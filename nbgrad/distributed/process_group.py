"""The default process group: MPI's world, its timeout, and the wait that enforces it.

nbgrad builds no transport of its own: ranks, world size and every byte moved come from MPI
(``mpi4py``), launched by ``mpiexec`` or ``srun``. ``mpi4py`` is imported only here and only
when a group is made, because importing it starts MPI. The group talks on a duplicate of
``COMM_WORLD``, so a program's own mpi4py messages never meet ours.

MPI has no timeout: a blocking call on a rank whose peer died waits forever. So every
operation here is MPI's non-blocking form, and ``wait`` polls it against the group's
deadline, raising ``DistBackendError`` instead of hanging (PyTorch's watchdog text).
"""
import atexit
import importlib.util
import os
import sys
import time
from datetime import timedelta

__all__ = ["is_available", "init_process_group", "is_initialized", "get_rank", "get_world_size",
           "get_backend", "barrier", "destroy_process_group", "DistError", "DistBackendError",
           "default_pg_timeout"]

default_pg_timeout = timedelta(minutes=30)
_yield = getattr(os, "sched_yield", lambda: None)
_SPIN_S = 1.0            # poll without sleeping this long: a large all-reduce progresses only while polled
_SLEEP_S = 0.0005        # then sleep between polls: the peer is late (computing), not mid-transfer   # PyTorch's default for CPU backends

_NOT_INITIALIZED = ("Default process group has not been initialized, please make sure to call "
                    "init_process_group.")


class DistError(RuntimeError):
    """An error of the distributed package."""


class DistBackendError(DistError):
    """The transport failed: a timeout, a dead peer, an MPI error."""


DistError.__module__ = DistBackendError.__module__ = "nbgrad.distributed"


class _ProcessGroup:
    """MPI's world as PyTorch's default group: a communicator, a timeout, a count of calls."""

    def __init__(self, MPI, timeout):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = timeout.total_seconds()
        self.seq = 0
        self.in_flight = set()          # works not yet completed: their buffers must outlive MPI's use
        self.broken = None              # the message of the timeout that left MPI mid-operation

    def __repr__(self):
        return f"<ProcessGroup mpi rank={self.rank} size={self.size}>"

    def check_usable(self):
        if self.broken is not None:
            raise DistBackendError(f"the process group is unusable after an earlier failure: {self.broken}")

    def wait(self, requests, started, describe, timeout=None, statuses=None):
        """Poll ``requests`` until all completed or the timeout, counted from ``started``,
        passed. Spin first (``Test`` also drives MPI's progress, as a blocking wait would),
        then sleep between polls, so that a slow peer does not cost a core for minutes."""
        Testall = self.MPI.Request.Testall
        try:
            if Testall(requests, statuses):
                return
            deadline = started + (self.timeout if timeout is None else timeout)
            relax = time.monotonic() + _SPIN_S
            while not Testall(requests, statuses):
                now = time.monotonic()
                if now > relax:
                    if now > deadline:
                        self._time_out(started, describe)
                    time.sleep(_SLEEP_S)
                else:
                    _yield()          # more ranks than free cores: let the peer we wait for run
        except self.MPI.Exception as e:
            raise DistBackendError(f"MPI error in {describe()}: {e.Get_error_string()}") from None

    def _time_out(self, started, describe):
        ran = int((time.monotonic() - started) * 1000)
        message = (f"Watchdog caught collective operation timeout: {describe()} ran for {ran} milliseconds "
                   "before timing out. Another rank exited, crashed or is stuck before this operation.")
        self.broken = message
        # MPI cannot cancel a started collective: ending this process normally would wait in
        # MPI_Finalize for peers that may never come. Abort the job at exit instead.
        atexit.register(_abort_job, self.comm)
        raise DistBackendError(message)


def _abort_job(comm):
    comm.Abort(1)


_group = None


def _default_group():
    if _group is None:
        raise ValueError(_NOT_INITIALIZED)
    return _group


def _check_group(group):
    pg = _default_group()
    if group is not None and group is not pg:
        raise ValueError("nbgrad.distributed has only the default process group (group=None)")
    pg.check_usable()
    return pg


def is_available():
    """Whether MPI can be used: ``mpi4py`` is installed (``pip install 'nbgrad[mpi]'``)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_initialized():
    return _group is not None


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1,
                       store=None, group_name="", pg_options=None, device_id=None):
    """Join MPI's world as the default group. Rank and world size come from the launcher
    (``mpiexec -n 4 python train.py``); given ones must agree with it."""
    global _group
    if _group is not None:
        raise ValueError("trying to initialize the default process group twice!")
    if backend is not None and str(backend).lower() != "mpi":
        raise ValueError(f"Invalid backend: '{backend}'. nbgrad.distributed runs on MPI only: "
                         "use backend='mpi' and launch with mpiexec or srun")
    if not is_available():
        raise RuntimeError("Distributed package doesn't have MPI built in: install mpi4py and an MPI "
                           "(pip install 'nbgrad[mpi]', which brings mpi4py and mpich)")
    if timeout is None:
        timeout = default_pg_timeout
    elif not isinstance(timeout, timedelta):
        timeout = timedelta(seconds=timeout)
    from mpi4py import MPI
    group = _ProcessGroup(MPI, timeout)
    _share_cores(group)
    if group.size > 1:
        _abort_on_uncaught_exception(group)
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if given not in (-1, None) and given != actual:
            group.comm.Free()
            raise ValueError(f"{name}={given} was given, but MPI launched this process with {name} {actual}")
    _group = group


def _abort_on_uncaught_exception(group):
    """A rank that ends with an uncaught exception aborts the job after printing it (what
    ``python -m mpi4py`` does): its peers stop at once instead of waiting in their next
    collective until the timeout. The previous hook comes back at ``destroy_process_group``."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        if _group is group and not issubclass(kind, KeyboardInterrupt):
            sys.stderr.flush()
            sys.stdout.flush()
            group.comm.Abort(1)
    hook.previous = previous
    sys.excepthook = hook


def _share_cores(group):
    """Give Numba's parallel kernels this rank's share of the machine's cores: with one
    thread pool per rank on every core, ranks preempt each other's threads, and a collective
    waits for the slowest. Left alone when ``NUMBA_NUM_THREADS`` is set."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    local = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    if ranks_here > 1:
        import numba
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, cores // ranks_here)))


def get_rank(group=None):
    return _check_group(group).rank


def get_world_size(group=None):
    return _check_group(group).size


def get_backend(group=None):
    _check_group(group)
    return "mpi"


def barrier(group=None, async_op=False, device_ids=None, timeout=None):
    """Wait until every rank got here (MPI's ``Ibarrier``, polled against the timeout)."""
    from .collectives import _barrier
    return _barrier(_check_group(group), async_op)


def destroy_process_group(group=None):
    global _group
    if _group is None:
        raise AssertionError("Process group cannot be None")
    pg = _check_group(group) if _group.broken is None else _group
    if pg.broken is None:
        pg.comm.Free()
    if hasattr(sys.excepthook, "previous"):
        sys.excepthook = sys.excepthook.previous
    _group = None
