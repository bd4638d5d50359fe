"""The registered probes, one file per probe; importing this package registers them."""

from . import sharing_probe
from .base import Probe, ProbeView, default_probes
from .sharing_probe import SharingProbe, coupled_gradient

__all__ = ["Probe", "ProbeView", "SharingProbe", "coupled_gradient", "default_probes", "sharing_probe"]
