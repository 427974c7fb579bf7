"""Targets: where a tensor's data lives and how kernels run on it.

A target owns one kind of array (the CPU target: NumPy arrays; a CUDA target would own
``numba.cuda`` device arrays) and is the only code that allocates, copies, views, checks the
layout of, and launches kernels on that kind of array. The Tensor layer asks ``target_of``
its data which target to use, and factories ask ``target_for`` a device. Adding a device is
adding a target and one ``register`` call; nothing above this package changes.
"""
import numbers

import numpy as np

from .cpu import CPU, CpuTarget

__all__ = ["CPU", "CpuTarget", "register", "target_of", "target_for", "common_target", "TARGETS", "cuda_target",
           "CUDA_MISSING"]

_BY_ARRAY_TYPE = {}
TARGETS = {}             # device type -> target


def register(target):
    """Make ``target`` own arrays of ``target.array_type`` and answer for its device type."""
    _BY_ARRAY_TYPE[target.array_type] = target
    TARGETS[target.device_type] = target


register(CPU)


def target_of(array):
    """The target owning ``array``."""
    target = _BY_ARRAY_TYPE.get(type(array))
    if target is None:
        for cls, t in _BY_ARRAY_TYPE.items():       # a subclass (np.memmap...) is its base's
            if isinstance(array, cls):
                return t
        raise TypeError(f"no nbgrad target holds arrays of type {type(array).__name__}")
    return target


def target_for(device_type=None):
    """The target that makes arrays for ``device_type`` (``None``: the CPU)."""
    if device_type is None:
        return CPU
    target = TARGETS.get(device_type)
    if target is None and device_type == "cuda":
        target = cuda_target()
    if target is None:
        if device_type == "cuda":
            raise RuntimeError(CUDA_MISSING)
        raise RuntimeError(f"nbgrad has no target for device type '{device_type}'")
    return target


CUDA_MISSING = ("nbgrad was asked for a CUDA tensor, but numba.cuda finds no GPU here (install nbgrad[cuda] "
                "on a machine with one, or set NUMBA_ENABLE_CUDASIM=1 for the simulator)")
_CUDA_TRIED = []


def cuda_target():
    """The CUDA target, made and registered on first request when numba.cuda can run kernels
    (a GPU, or its simulator); ``None`` otherwise. Importing nbgrad imports no numba.cuda.
    ``nbgrad.cuda`` asks it: ``is_available()`` is ``cuda_target() is not None``, and the
    target answers ``device_count()``, ``synchronize()``, ``device_name()``, ``implementation()``."""
    if not _CUDA_TRIED:
        _CUDA_TRIED.append(True)
        try:
            from numba import cuda
            if not cuda.is_available():
                return None
        except Exception:                      # no numba.cuda, no driver: no CUDA target
            return None
        from .cuda import CudaTarget
        register(CudaTarget())
    return TARGETS.get("cuda")


def common_target(arrays):
    """The one target of ``arrays`` (numbers among them are skipped), with PyTorch's error
    when they are on different devices. ``CPU`` when there is no array."""
    found = None
    for a in arrays:
        t = _BY_ARRAY_TYPE.get(type(a))
        if t is None:
            if isinstance(a, (numbers.Number, np.generic)):
                continue
            t = target_of(a)
        if found is None:
            found = t
        elif t is not found:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                               f"{_name(found)} and {_name(t)}!")
    return found or CPU


def _name(target):
    """A target's device as PyTorch's error texts name it (``cuda:0``, ``cpu``)."""
    return getattr(target, "device_str", target.device_type)
