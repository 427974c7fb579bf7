"""``torch.linalg``: the norms and singular values (the other decompositions are not built)."""
from .functional.linalg import matmul  # noqa: F401
from .functional.linalg_norms import linalg_norm as norm
from .functional.linalg_norms import LinAlgError, matrix_norm, svdvals, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm", "svdvals", "matmul", "LinAlgError"]
