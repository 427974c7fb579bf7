"""The optimizers' fused update kernels for CUDA, generated from the same per-element rules
(``ops/optim.py``'s ``RULES``) as the CPU loops: one thread per element, the hyperparameters
passed by value as a tuple of the parameter's dtype (nothing is copied to the device per
step), the arrays flat device buffers."""
import functools

from ..optim import LERP, RULES, body
from .._cache import load_module

__all__ = ["kernel"]

_CUDA = '''\
from numba import config, cuda

if config.ENABLE_CUDASIM:
    from numpy import sqrt      # the simulator runs Python: math.sqrt would widen float32
else:
    from math import sqrt       # numba-cuda has no np.sqrt loop; this is sqrt.rn in the dtype


@cuda.jit(device=True)
{lerp}

@cuda.jit
def step(n, p, g, {states}, h):
    i = cuda.grid(1)
    if i < n:
{body}'''


@functools.cache
def kernel(family):
    """``family``'s kernel: ``kernel[blocks, threads](n, p, g, *states, h)``."""
    source = _CUDA.format(lerp=LERP, states=", ".join(RULES[family].states), body=body(family, 8))
    return load_module(f"cuda_optim_{family}", source).step
