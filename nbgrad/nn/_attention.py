"""``F.scaled_dot_product_attention``: ``softmax(q k^T * scale + bias) v``, composed of Tensor
ops (batched ``matmul``, ``softmax``, ``dropout``), so its gradient needs no rule of its own.

A boolean mask says where attention is *allowed* (``True``), a float mask is added to the
scores, ``is_causal`` allows each query position the key positions up to its own. A query
row that may attend to nothing gives zeros (and no gradient), as PyTorch's CPU kernel does,
not the NaN a plain softmax of ``-inf`` everywhere would give."""
import math

from .. import _dtype
from ..factories import arange, zeros
from . import functional as F

__all__ = ["scaled_dot_product_attention"]

# how PyTorch's C++ names dtypes in its messages
_C_NAMES = {"float64": "double", "float32": "float", "int64": "long int", "bool": "bool"}


def _attention_bias(attn_mask, is_causal, L, S, dtype):
    """The additive bias (``None`` if there is none): 0 where allowed, ``-inf`` where not."""
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        allowed = arange(L)[:, None] >= arange(S)[None, :]
        return zeros((L, S), dtype=dtype).masked_fill(~allowed, -math.inf)
    if attn_mask is None:
        return None
    if attn_mask.dtype is _dtype.bool:
        return zeros(attn_mask.shape, dtype=dtype).masked_fill(~attn_mask, -math.inf)
    return attn_mask


def _share_heads(x, heads):
    """Grouped-query attention: each of ``x``'s heads (dim -3) serves ``heads / x_heads``
    consecutive query heads (``repeat_interleave``, as an expand and a reshape)."""
    kv_heads = x.shape[-3]
    if heads % kv_heads:
        raise RuntimeError("Number of heads in key and value must divide the number of heads in ")
    shape = tuple(x.shape)
    grouped = x.unsqueeze(-3).expand(*shape[:-2], heads // kv_heads, *shape[-2:])
    return grouped.reshape(*shape[:-3], heads, *shape[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Attention of ``query`` ``(..., L, E)`` over ``key`` ``(..., S, E)`` / ``value``
    ``(..., S, Ev)``: shape ``(..., L, Ev)``. ``scale`` defaults to ``1/sqrt(E)``; ``dropout_p``
    drops attention weights (always: the caller passes 0 in eval mode, as in PyTorch)."""
    if not (query.dtype is key.dtype is value.dtype):
        q, k, v = (_C_NAMES[x.dtype.name] for x in (query, key, value))
        raise RuntimeError("Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{q} key.dtype: {k} and value.dtype: {v} instead.")
    if enable_gqa and query.dim() >= 3 and query.shape[-3] != key.shape[-3]:
        key, value = _share_heads(key, query.shape[-3]), _share_heads(value, query.shape[-3])
    if attn_mask is not None and attn_mask.dtype is not _dtype.bool and attn_mask.dtype is not query.dtype:
        raise RuntimeError("Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                           f"attn_mask.dtype: {_C_NAMES[attn_mask.dtype.name]} and  query.dtype: "
                           f"{_C_NAMES[query.dtype.name]} instead.")
    L, S = query.shape[-2], key.shape[-2]
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query.matmul(key.transpose(-2, -1)) * scale_factor
    bias = _attention_bias(attn_mask, is_causal, L, S, query.dtype)
    if bias is None:
        weights = scores.softmax(-1)
    else:
        scores = scores + bias
        dead = bias.detach().amax(-1, keepdim=True) == -math.inf      # rows with nothing allowed
        if bool(dead.sum()):
            weights = scores.masked_fill(dead, 0.0).softmax(-1).masked_fill(dead, 0.0)
        else:
            weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return weights.matmul(value)
