"""Independent sharing (APS-I): disjoint identity slices, no meta-weight shared between candidates."""

from ...registry import register_scheme
from .base import SharingScheme, no_argument


@register_scheme("independent")
def independent(argument: str | None) -> SharingScheme:
    """APS-I: disjoint identity slices, fixed (the minimum of Φ, Theorem 3.1)."""
    no_argument("independent", argument)
    return SharingScheme("independent", overlap=0.0)
