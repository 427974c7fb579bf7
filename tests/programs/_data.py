"""Random inputs for the programs, drawn from NumPy with a fixed seed.

Where a public program calls ``torch.randn`` / ``torch.normal`` / ``torch.rand`` for its data or
initial weights, our copy calls these instead, so that nbgrad and PyTorch see the same numbers and
their printed results can be compared. ``torch`` here is whichever module the runner mapped.
"""
import numpy as np
import torch

_rng = np.random.default_rng(0)


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(size)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """``torch.randn`` from the seeded NumPy generator (float32 unless ``dtype`` says)."""
    a = _rng.standard_normal(_shape(size))
    return torch.tensor(a, dtype=dtype or torch.float32, device=device, requires_grad=requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """``torch.rand`` from the seeded NumPy generator."""
    a = _rng.random(_shape(size))
    return torch.tensor(a, dtype=dtype or torch.float32, device=device, requires_grad=requires_grad)


def normal(mean, std, size, requires_grad=False):
    """``torch.normal(mean, std, size)`` from the seeded NumPy generator."""
    a = _rng.normal(mean, std, tuple(size))
    return torch.tensor(a, dtype=torch.float32, requires_grad=requires_grad)
