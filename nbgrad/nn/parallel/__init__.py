"""``nbgrad.nn.parallel``: data-parallel training over ``nbgrad.distributed``."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
