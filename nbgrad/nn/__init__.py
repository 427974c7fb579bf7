"""``nbgrad.nn``: layers, losses and initialisers, built only on the public Tensor API."""
from . import functional, init
from .container import *  # noqa: F401,F403
from .container import __all__ as _container
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss
from .module import Module
from .normalization import *  # noqa: F401,F403
from .normalization import __all__ as _normalization
from .pooling import *  # noqa: F401,F403
from .pooling import __all__ as _pooling
from .parameter import Parameter

__all__ = (["Module", "Parameter", "functional", "init"] + _container + _layers + _loss
           + _conv + _pooling + _normalization)
