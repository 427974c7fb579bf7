"""Tensor printing (being written)."""

def tensor_repr(t):
    return f"tensor({t._data!r})"
