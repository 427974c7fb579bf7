"""nbgrad: PyTorch-style automatic differentiation with Numba-compiled kernels.

``import nbgrad as torch`` runs ordinary PyTorch autograd code on the CPU.
"""
from . import _runtime

_runtime.configure()             # before BLAS loads: see _runtime.py
from ._dtype import bool, double, dtype, float, float32, float64, get_default_dtype, int64, long, set_default_dtype
from ._dtype import (bfloat16, float16, half, int, int8, int16, int32, promote_types, short,  # noqa: F401,A004
                     uint8)
from ._types import *  # noqa: F401,F403  (FloatTensor..., result_type)
from ._types import __all__ as _types
from ._interop import from_dlpack  # noqa: F401  (and the Tensor's __dlpack__, __array__, __array_ufunc__)
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
from .functional.sorting import *  # noqa: F401,F403
from .functional.sorting import __all__ as _sorting
from .functional.misc import *  # noqa: F401,F403
from .functional.misc import __all__ as _misc
from .functional.scan import *  # noqa: F401,F403
from .functional.scan import __all__ as _scan
from .functional.arrange import *  # noqa: F401,F403
from .functional.arrange import __all__ as _arrange
from .functional.einsum import einsum
from .functional.index_ops import *  # noqa: F401,F403
from .functional.index_ops import __all__ as _index_ops
from .functional.random import *  # noqa: F401,F403
from .functional.random import __all__ as _random
from .functional.linalg_norms import norm
from . import linalg, testing
from .functional.aliases import install as _install_aliases
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .autograd import inference_mode, is_inference_mode_enabled
from .autograd import is_anomaly_check_nan_enabled, is_anomaly_enabled, set_detect_anomaly
from ._formatting import get_printoptions, set_printoptions
from . import nn, optim
from . import compiler
from .compiler import compile
from .serialization import load, save
from . import utils
from . import distributed  # imports no MPI until init_process_group
from . import accelerator, backends, cuda
from ._device import *  # noqa: F401,F403
from ._device import __all__ as _device

_install_aliases(globals())       # axis=/keepdims=/out= on the functions above

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
__all__ += ["float16", "half", "bfloat16", "int32", "int", "int16", "short", "int8", "uint8", "promote_types",
            "from_dlpack", "inference_mode", "is_inference_mode_enabled", "cuda", "backends", "accelerator"]
__all__ += _device + _types
__all__ += _sorting + _misc + _scan + _arrange + _index_ops + _random + ["einsum", "norm", "linalg", "testing"]
