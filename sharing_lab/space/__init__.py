"""The search space: model layouts (one file per model family in :mod:`~sharing_lab.space.models`, registered by
name), their MACs and parameters in closed form, plain networks of one width per decision, and the
:class:`~sharing_lab.space.search_space.SearchSpace` of a layout under a sharing scheme."""

from .search_space import Arch, LayerUse, SearchSpace, build_space

__all__ = ["Arch", "LayerUse", "SearchSpace", "build_space"]
