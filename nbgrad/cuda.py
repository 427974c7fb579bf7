"""``torch.cuda``: answered by the CUDA target (``ops/targets/cuda.py``) where numba.cuda can
run kernels (a GPU, or its simulator under ``NUMBA_ENABLE_CUDASIM=1``); elsewhere as a
CPU-only PyTorch build answers it: no device, and the calls that need one raise PyTorch's
``AssertionError``, so ``"cuda" if torch.cuda.is_available() else "cpu"`` takes the CPU branch."""
from nbgrad.ops.targets import cuda_target

__all__ = ["is_available", "device_count", "is_initialized", "manual_seed", "manual_seed_all", "seed", "seed_all",
           "synchronize", "current_device", "set_device", "get_device_name", "get_device_properties",
           "get_device_capability", "empty_cache", "memory_allocated", "max_memory_allocated", "memory_reserved",
           "max_memory_reserved", "reset_peak_memory_stats", "is_bf16_supported", "get_rng_state", "set_rng_state",
           "current_stream", "init"]

_NOT_COMPILED = "Torch not compiled with CUDA enabled"


def _lazy_init():
    """The CUDA target, or PyTorch's error where there is none."""
    target = cuda_target()
    if target is None:
        raise AssertionError(_NOT_COMPILED)
    return target


def is_available():
    """Whether a CUDA device (or the simulator) can run nbgrad's CUDA target."""
    return cuda_target() is not None


def device_count():
    """The number of CUDA devices (0 without one)."""
    target = cuda_target()
    return 0 if target is None else target.device_count()


def is_initialized():
    return False


def init():
    _lazy_init()


def manual_seed(seed):
    """Seed the CUDA generators: nothing to seed, and no error, as in PyTorch without CUDA."""


def manual_seed_all(seed):
    """Seed every CUDA device's generator: nothing to seed."""


def seed():
    """Seed the CUDA generator randomly: nothing to seed."""


def seed_all():
    """Seed every CUDA generator randomly: nothing to seed."""


def empty_cache():
    """Release cached device memory: there is none."""


def memory_allocated(device=None):
    return 0


def max_memory_allocated(device=None):
    return 0


def memory_reserved(device=None):
    return 0


def max_memory_reserved(device=None):
    return 0


def reset_peak_memory_stats(device=None):
    """Nothing to reset."""


def is_bf16_supported(including_emulation=True):
    return False


def synchronize(device=None):
    """Wait for the device's queued work."""
    _lazy_init().synchronize()


def current_device():
    _lazy_init()
    return 0


def set_device(device):
    _lazy_init()


def get_device_name(device=None):
    return _lazy_init().device_name()


def get_device_properties(device=None):
    _lazy_init()


def get_device_capability(device=None):
    _lazy_init()


def get_rng_state(device="cuda"):
    _lazy_init()


def set_rng_state(new_state, device="cuda"):
    _lazy_init()


def current_stream(device=None):
    _lazy_init()
