"""``torch.linalg``: the norms (the matrix functions needing decompositions are not built)."""
from .functional.linalg import matmul  # noqa: F401
from .functional.linalg_norms import linalg_norm as norm
from .functional.linalg_norms import matrix_norm, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm", "matmul"]
