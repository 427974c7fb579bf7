"""``torch.backends``: the switches scripts probe or set. nbgrad has one backend (Numba on
the CPU); these report what a CPU-only PyTorch build reports, and the settable flags keep
the value set (they change nothing in nbgrad's kernels, which are deterministic)."""
import types

__all__ = ["cuda", "cudnn", "mps", "mkldnn", "mkl", "openmp"]


def _module(name, doc, **attrs):
    m = types.ModuleType(f"{__name__}.{name}", doc)
    m.__dict__.update(attrs)
    return m


def _false():
    return False


def _true():
    return True


class _Flags:
    """A namespace of settable flags (``torch.backends.cuda.matmul.allow_tf32 = True``)."""

    def __init__(self, **flags):
        self.__dict__.update(flags)


mps = _module("mps", "Apple GPUs: not available.", is_available=_false, is_built=_false)
cudnn = _module("cudnn", "cuDNN: not available; benchmark/deterministic/enabled/allow_tf32 are kept as set.",
                is_available=_false, version=lambda: None, enabled=True, benchmark=False, deterministic=False,
                allow_tf32=True, benchmark_limit=10)
cuda = _module("cuda", "CUDA: not built.", is_built=_false,
               matmul=_Flags(allow_tf32=False, allow_fp16_reduced_precision_reduction=True,
                             allow_bf16_reduced_precision_reduction=True),
               preferred_linalg_library=lambda backend=None: None)
mkldnn = _module("mkldnn", "oneDNN: not used by nbgrad.", is_available=_false, enabled=False)
mkl = _module("mkl", "MKL: not used by nbgrad (NumPy's BLAS does the products).", is_available=_false)
openmp = _module("openmp", "OpenMP: nbgrad's parallel loops use Numba's threads.", is_available=_false)
