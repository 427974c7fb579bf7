"""``nbgrad.optim``: optimizers that update parameters in place with tensor ops."""
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
