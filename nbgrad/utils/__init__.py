"""``nbgrad.utils``: helpers outside the tensor core: ``data`` (datasets and loading) and
``checkpoint`` (activation checkpointing)."""
from . import checkpoint, data

__all__ = ["checkpoint", "data"]
