"""``nbgrad.utils``: helpers outside the tensor core (``nbgrad.utils.data``)."""
from . import data

__all__ = ["data"]
