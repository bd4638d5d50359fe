"""What a search's supernet needs in memory, predicted from its layout before anything is allocated, and the
refusal of a search that would not fit (``runtime.max_supernet_gb``)."""

from __future__ import annotations

from ..config import Config
from ..errors import InputError
from ..space.layout import Channels, Layout
from ..space.search_space import layout_of


def supernet_size(layout: Layout, affine: bool = False) -> tuple[int, int]:
    """(parameters, floating buffers) of the APS supernet of ``layout``, counted without building it: per APS
    layer the meta-weight and one BN per output candidate (with weight and bias when ``affine``), per side one
    transform matrix (meta width × width) per candidate; the classifier's weight, bias and transforms."""
    decisions = layout.decisions

    def side(channels: Channels) -> tuple[int, tuple[int, ...]]:  # (meta width, candidate widths)
        if channels.decision is None:
            return channels.fixed, (channels.fixed,)
        decision = decisions[channels.decision]
        return decision.meta_width, tuple(decision.candidates)

    def transforms(meta: int, widths: tuple[int, ...]) -> int:
        return sum(meta * width for width in widths)

    params = buffers = 0
    convs = [(c.outputs, None if c.depthwise else c.inputs, c.kernel) for c in layout.convs()]
    convs += [(b.outputs, b.inputs, 1) for b in layout.blocks if b.projection_possible()]
    for outputs, inputs, kernel in convs:
        out_meta, out_widths = side(outputs)
        in_meta, in_widths = side(inputs) if inputs is not None else (1, ())
        params += out_meta * in_meta * kernel * kernel + (2 * sum(out_widths) if affine else 0)
        buffers += transforms(out_meta, out_widths) + transforms(in_meta, in_widths) + 2 * sum(out_widths)
    in_meta, in_widths = side(layout.classifier_in)
    params += layout.num_classes * in_meta + layout.num_classes
    buffers += transforms(in_meta, in_widths) + layout.num_classes ** 2
    return params, buffers


def predicted_bytes(config: Config) -> int:
    """Bytes the supernet of ``config`` needs on its device, predicted from the layout (float32 parameters with
    their gradients and momentum, transforms and BN statistics; activations not counted). The data's classes
    and channels are not known yet: the model's defaults stand in (they only change the stem and classifier)."""
    params, buffers = supernet_size(layout_of(config.model), affine=config.model.bn == "per_candidate_affine")
    return 4 * (3 * params + buffers)


def check_memory(config: Config) -> None:
    """Refuse a search whose supernet is predicted (:func:`predicted_bytes`) to exceed
    ``runtime.max_supernet_gb``, before anything is allocated or made on disk."""
    needed, limit = predicted_bytes(config), config.runtime.max_supernet_gb
    if needed > limit * 2**30:
        raise InputError(f"the supernet of this configuration needs about {needed / 2**30:.3g} GB (parameters, "
                         f"gradients, momentum, transforms), more than runtime.max_supernet_gb = {limit:g}; use "
                         "smaller model.widths or raise runtime.max_supernet_gb")
