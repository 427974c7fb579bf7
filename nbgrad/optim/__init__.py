"""``nbgrad.optim``: optimizers that update each parameter in place with one fused kernel call."""
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adamax import Adamax
from .nadam import NAdam
from .radam import RAdam
from .rmsprop import RMSprop
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]

__all__ += ["RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"]
