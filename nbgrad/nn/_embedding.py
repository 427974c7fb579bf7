"""``F.embedding`` and ``nn.Embedding``: a lookup of rows of a table, one recorded op
(``EmbeddingBackward0``) whose backward is the scatter-add kernel of ``ops/embedding.py``.

The op is linear in the table, so every derivative is again a gather or a scatter of the
incoming gradient with the same indices: the backward records ``EmbeddingDenseBackward0``
(scatter), whose backward is a gather recorded as ``EmbeddingBackward0`` again, so any order
of derivative works without a second implementation. The ``padding_idx`` row gets no
gradient (the scatter skips it; its adjoint, the gather, yields zeros there). The kernels are
those of the tensors' target (``target.embedding``): the same layer runs on the CPU and on CUDA."""
from nbgrad.ops.targets import common_target

from .. import _dtype
from ..autograd.grad_mode import no_grad
from ..autograd.graph import Node
from ..factories import empty
from ..tensor import record
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["embedding", "Embedding"]


class EmbeddingBackward0(Node):
    """Of a gather ``out[i] = table[idx[i]]``: the gradient is the scatter-add of ``grad``."""

    def backward(self, grad):
        (indices,) = self.saved_tensors
        data = _kernels(grad, indices).scatter_add_rows(grad._data, indices._data, self.num_weights, self.padding_idx,
                                        self.scale_grad_by_freq)
        return (record(EmbeddingDenseBackward0, data, (grad,), saved=(indices,), padding_idx=self.padding_idx,
                       scale_grad_by_freq=self.scale_grad_by_freq, num_weights=self.num_weights),)


class EmbeddingDenseBackward0(Node):
    """Of the scatter-add: the gradient is the (padding-masked) gather of ``grad``."""

    def backward(self, grad):
        (indices,) = self.saved_tensors
        return (_gather(grad, indices, self.padding_idx, self.scale_grad_by_freq, adjoint=True),)


def _gather(table, indices, padding_idx, scale_grad_by_freq, adjoint=False):
    """The lookup, recorded; ``adjoint``: the exact adjoint of the backward's scatter (the
    padding row read as zeros, rows divided by their counts under ``scale_grad_by_freq``)."""
    data = _kernels(table, indices).gather_rows(table._data, indices._data, padding_idx if adjoint else -1,
                               scale_grad_by_freq and adjoint)
    return record(EmbeddingBackward0, data, (table,), saved=(indices,), padding_idx=padding_idx,
                  scale_grad_by_freq=scale_grad_by_freq, num_weights=table.shape[0])


def _kernels(*tensors):
    """The embedding kernels of the target holding ``tensors`` (PyTorch's error if they are on two devices)."""
    return common_target([t._data for t in tensors]).embedding


def _padding_index(padding_idx, num_weights):
    """``padding_idx`` as a row number (negative counts from the end), -1 for none."""
    if padding_idx is None:
        return -1
    if not -num_weights <= padding_idx < num_weights:
        raise AssertionError("Padding_idx must be within num_embeddings")
    return padding_idx % num_weights


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """The rows of ``weight`` named by the indices in ``input``: shape ``input.shape + (dim,)``.
    ``max_norm`` first rescales (in place, unrecorded) each named row whose norm exceeds it."""
    if input.dtype is not _dtype.int64:
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.type()} instead (while checking arguments for embedding)")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    if weight.dim() != 2:
        raise RuntimeError("'weight' must be 2-D")
    if sparse:
        raise NotImplementedError("nbgrad has no sparse tensors: embedding(sparse=True) is not supported")
    if max_norm is not None:
        with no_grad():
            _kernels(weight, input).renorm_rows(weight._data, input._data, max_norm, norm_type)
            weight._version_counter.value += 1
    return _gather(weight, input, padding_idx, bool(scale_grad_by_freq))


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by index;
    initialised from N(0, 1), with the ``padding_idx`` row zero and never trained."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if padding_idx > 0:
                if padding_idx >= num_embeddings:
                    raise AssertionError("Padding_idx must be within num_embeddings")
            elif padding_idx < 0:
                if padding_idx < -num_embeddings:
                    raise AssertionError("Padding_idx must be within num_embeddings")
                padding_idx = num_embeddings + padding_idx
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(empty((num_embeddings, embedding_dim), device=device, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if list(_weight.shape) != [num_embeddings, embedding_dim]:
                raise AssertionError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self):
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self):
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input):
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += ", scale_grad_by_freq=True"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An ``Embedding`` whose table is ``embeddings`` (2-D), frozen unless ``freeze=False``."""
        if embeddings.dim() != 2:
            raise AssertionError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        return cls(rows, cols, _weight=embeddings, _freeze=freeze, padding_idx=padding_idx, max_norm=max_norm,
                   norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)

