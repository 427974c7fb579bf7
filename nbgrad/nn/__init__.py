"""``nbgrad.nn``: layers, losses and initialisers, built only on the public Tensor API."""
from . import functional, init, utils
from ._embedding import Embedding
from .attention import MultiheadAttention
from .dropout import AlphaDropout, Dropout1d, Dropout2d, Dropout3d, FeatureAlphaDropout
from . import parallel
from .container import *  # noqa: F401,F403
from .container import __all__ as _container
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss
from .module import Module
from .rnn import *  # noqa: F401,F403
from .rnn import __all__ as _rnn
from .normalization import *  # noqa: F401,F403
from .normalization import __all__ as _normalization
from .pooling import *  # noqa: F401,F403
from .pooling import __all__ as _pooling
from .parameter import Parameter

__all__ = ["Module", "Parameter", "functional", "init", "parallel", "utils"] + _container + _layers + _loss + _rnn
__all__ += ["Embedding", "MultiheadAttention", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
            "FeatureAlphaDropout"]
__all__ += _conv + _pooling + _normalization
