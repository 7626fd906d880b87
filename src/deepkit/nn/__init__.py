"""Building blocks torch lacks or that deepkit wants named."""

from deepkit.nn.attention import KVCache, MultiHeadAttention, TransformerBlock, scaled_dot_product
from deepkit.nn.layers import get_act, get_norm, list_acts, list_norms

__all__ = [
    "KVCache",
    "MultiHeadAttention",
    "TransformerBlock",
    "get_act",
    "get_norm",
    "list_acts",
    "list_norms",
    "scaled_dot_product",
]
