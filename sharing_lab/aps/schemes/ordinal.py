"""Ordinal sharing (APS-O): every candidate takes the first c_a meta channels (identity prefixes, Φ maximal)."""

from ...registry import register_scheme
from .base import SharingScheme, no_argument


@register_scheme("ordinal")
def ordinal(argument: str | None) -> SharingScheme:
    """APS-O: nested identity prefixes, fixed (the maximum of Φ, Theorem 3.1)."""
    no_argument("ordinal", argument)
    return SharingScheme("ordinal", overlap=1.0)
