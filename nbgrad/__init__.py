"""nbgrad: PyTorch-style automatic differentiation with Numba-compiled kernels.

``import nbgrad as torch`` runs ordinary PyTorch autograd code on the CPU.
"""
from . import _runtime

_runtime.configure()             # before BLAS loads: see _runtime.py
from ._dtype import bool, double, dtype, float, float32, float64, get_default_dtype, int64, long, set_default_dtype
from .tensor import Size, Tensor, device, is_tensor
from .factories import *  # noqa: F401,F403  (their __all__)
from .factories import __all__ as _factories
from .functional.pointwise import *  # noqa: F401,F403
from .functional.pointwise import __all__ as _pointwise
from .functional.reduction import *  # noqa: F401,F403
from .functional.reduction import __all__ as _reduction
from .functional.linalg import *  # noqa: F401,F403
from .functional.linalg import __all__ as _linalg
from .functional.shape import *  # noqa: F401,F403
from .functional.shape import __all__ as _shape
from .functional.indexing import *  # noqa: F401,F403
from .functional.indexing import __all__ as _indexing
from .functional import inplace  # noqa: F401  (attaches the in-place methods)
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .autograd import is_anomaly_check_nan_enabled, is_anomaly_enabled, set_detect_anomaly
from ._formatting import get_printoptions, set_printoptions
from . import nn, optim
from . import compiler
from .compiler import compile
from .serialization import load, save
from . import utils
from . import distributed  # imports no MPI until init_process_group
from .functional.device import get_default_device, set_default_device

__version__ = "0.1.0"

__all__ = ["Tensor", "Size", "device", "dtype", "float32", "float64", "int64", "bool", "float", "double",
           "long", "get_default_dtype", "set_default_dtype", "is_tensor", "autograd", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "is_anomaly_enabled", "is_anomaly_check_nan_enabled",
           "set_detect_anomaly", "nn", "optim", "set_printoptions",
           "get_printoptions"] + _factories + _pointwise + _reduction + _linalg + _shape + _indexing
# one line per feature, so that additions merge
__all__ += ["compile", "compiler"]
__all__ += ["utils", "save", "load"]
__all__ += ["distributed"]
__all__ += ["set_default_device", "get_default_device"]
