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


def synthetic_mnist(n_train=5000, n_valid=1000, seed=0):
    """A stand-in for the MNIST pickle of "What is torch.nn really?" (no download): NumPy arrays
    shaped like it, ``x`` float32 (N, 784) in [0, 1], ``y`` int64 in 0..9; mostly zeros like
    MNIST; each class
    inks random 4x4 blocks (half the pixels dropped, plus stray ink), so that a linear model
    or a small CNN can learn it."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((10, 7, 7)) < 0.3               # each digit's "ink": 4x4 blocks, mostly zeros
    strokes = np.kron(coarse, np.ones((4, 4), dtype=bool)).reshape(10, 784)

    def draw(n):
        y = rng.integers(0, 10, n)
        ink = (strokes[y] & (rng.random((n, 784)) < 0.5)) | (rng.random((n, 784)) < 0.1)
        x = ink * rng.uniform(0.3, 1.0, (n, 784))
        return x.astype(np.float32), y.astype(np.int64)

    (x_train, y_train), (x_valid, y_valid) = draw(n_train), draw(n_valid)
    return (x_train, y_train), (x_valid, y_valid), None
