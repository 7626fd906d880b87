"""Building blocks torch lacks or that deepkit wants named."""

from deepkit.nn.layers import get_act, get_norm, list_acts, list_norms

__all__ = ["get_act", "get_norm", "list_acts", "list_norms"]
