"""The mathematics of affine parameter sharing (paper Sections 3.1–3.4): the sharing level Φ (Eq. 4) and its
projected-gradient transition (Eq. 5) in :mod:`~sharing_lab.aps.sharing`, the APS layers of Eq. 2 in
:mod:`~sharing_lab.aps.layers`, the sharing schemes (one file each, :mod:`~sharing_lab.aps.schemes`), how a search's
transforms move (:mod:`~sharing_lab.aps.transition`, with the Φ schedule of :mod:`~sharing_lab.aps.phi_schedule`),
and the numerical checks of Theorem 3.1 (:mod:`~sharing_lab.aps.theorem`)."""

from .layers import APSConv2d, APSLinear, KernelGroup, TransformSet, candidate_kernel, transition_plan

__all__ = ["APSConv2d", "APSLinear", "KernelGroup", "TransformSet", "candidate_kernel", "transition_plan"]
