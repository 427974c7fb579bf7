"""nbgrad's op library: forward and backward kernels of every primitive op, on raw arrays.

Installed as ``nbgrad.ops``. It never sees a Tensor or the graph: callers pass NumPy
arrays (already broadcast-compatible, already of the dtype to compute in) and an output
array to fill. Each op family keeps its kernels in one module. ``targets`` is the layer the
Tensor layer goes through: it owns the arrays (allocation, copies, views, layout) and launches
these kernels on them.
"""
from . import elementwise
from ._cache import cache_dir

__all__ = ["elementwise", "cache_dir"]
