"""``torch.accelerator``: the device-neutral view of the current accelerator. nbgrad runs
on the CPU only (the CUDA target is planned), so there is none."""

__all__ = ["is_available", "current_accelerator", "device_count", "synchronize", "current_device_index",
           "set_device_index"]

_NONE = "Cannot access accelerator device when none is available."


def is_available():
    """Whether an accelerator (CUDA) is usable: False."""
    return False


def current_accelerator(check_available=False):
    """The accelerator's device type: None."""
    return None


def device_count():
    return 0


def synchronize(device=None):
    raise RuntimeError(_NONE)


def current_device_index():
    raise RuntimeError(_NONE)


def set_device_index(device):
    raise RuntimeError(_NONE)
