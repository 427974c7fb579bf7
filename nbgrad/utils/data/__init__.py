"""``nbgrad.utils.data``: feeding data to training."""
from .distributed import DistributedSampler

__all__ = ["DistributedSampler"]
