"""Affine parameter sharing: sharing schemes, the sharing level Φ and its projected-gradient transition.

Paper Sections 3.1, 3.2 and 3.4. A layer with candidate widths c_1 < … < c_A and meta width M keeps one
transform T^a ∈ R^{M×c_a} per candidate on each side (P^o for outputs, Q^i for inputs). A *scheme* decides
how those transforms start and whether they move after warm-up; schemes are registered by name so that users
can add their own (:func:`register_scheme`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

DEFAULT_SIGMA = 1e-3


@dataclass(frozen=True)
class Transforms:
    """The transforms of one side of one layer.

    ``matrices[a]`` is T^a (M × c_a). ``offsets`` is set when every T^a is an exact identity slice
    (columns ``offsets[a] … offsets[a] + c_a`` of I_M): the candidate kernel is then a zero-copy slice of the
    meta-weight instead of an einsum (Eq. 2 with selection matrices).
    """

    matrices: tuple[torch.Tensor, ...]
    offsets: tuple[int, ...] | None


@dataclass(frozen=True)
class SharingScheme:
    """A named way to initialise P/Q and to say whether they follow the Φ transition after warm-up.

    ``overlap`` places candidate a's identity block at row offset Σ_{j<a} floor((1−overlap)·c_j)
    (1 = ordinal, 0 = independent). ``sigma`` > 0 adds N(0, σ²) noise before unit-normalising columns; it is
    what lets the transition move away from an exact ordinal start (notes: at an exact start the Φ-gradient of
    an overlapping column is parallel to it and the projection cancels it).
    """

    name: str
    overlap: float
    sigma: float = 0.0
    transition: bool = False

    def offsets(self, widths: Sequence[int]) -> tuple[int, ...]:
        """Row offsets of each candidate's identity block."""
        offsets, position = [], 0
        for width in widths:
            offsets.append(position)
            position += math.floor((1.0 - self.overlap) * width + 1e-9)
        return tuple(offsets)

    def required_meta_width(self, widths: Sequence[int]) -> int:
        """Smallest meta width that holds every candidate's block."""
        return max(off + w for off, w in zip(self.offsets(widths), widths))

    def make(self, widths: Sequence[int], meta_width: int, generator: torch.Generator | None = None) -> Transforms:
        """Build the starting transforms for candidates ``widths`` in a meta width ``meta_width``."""
        needed = self.required_meta_width(widths)
        if meta_width < needed:
            raise ValueError(
                f"scheme {self.name!r} needs meta width >= {needed} for candidates {list(widths)}, got {meta_width}"
            )
        offsets = self.offsets(widths)
        matrices = []
        for off, width in zip(offsets, widths):
            matrix = torch.zeros(meta_width, width)
            matrix[off : off + width] = torch.eye(width)
            if self.sigma > 0:
                matrix += self.sigma * torch.randn(meta_width, width, generator=generator)
                matrix = normalize_columns(matrix)
            matrices.append(matrix)
        return Transforms(tuple(matrices), None if self.sigma > 0 else offsets)


_SCHEMES: dict[str, Callable[[str | None], SharingScheme]] = {}


def register_scheme(name: str) -> Callable[[Callable[[str | None], SharingScheme]], Callable]:
    """Register a scheme factory under ``name``; the factory receives the text after ``name:`` (or None)."""

    def decorate(factory: Callable[[str | None], SharingScheme]) -> Callable[[str | None], SharingScheme]:
        _SCHEMES[name] = factory
        return factory

    return decorate


def _no_argument(name: str, argument: str | None) -> None:
    if argument is not None:
        raise ValueError(f"scheme {name!r} takes no argument (got {name}:{argument})")


@register_scheme("ordinal")
def _ordinal(argument: str | None) -> SharingScheme:
    _no_argument("ordinal", argument)
    return SharingScheme("ordinal", overlap=1.0)


@register_scheme("independent")
def _independent(argument: str | None) -> SharingScheme:
    _no_argument("independent", argument)
    return SharingScheme("independent", overlap=0.0)


@register_scheme("overlap")
def _overlap(argument: str | None) -> SharingScheme:
    try:
        alpha = float(argument) if argument is not None else math.nan
    except ValueError:
        alpha = math.nan
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"scheme 'overlap:<alpha>' needs alpha in [0, 1], got {argument!r}")
    return SharingScheme(f"overlap:{alpha:g}", overlap=alpha)


@register_scheme("transitionary")
def _transitionary(argument: str | None) -> SharingScheme:
    sigma = DEFAULT_SIGMA
    if argument is not None:
        try:
            sigma = float(argument)
        except ValueError:
            raise ValueError(f"scheme 'transitionary:<sigma>' needs a number, got {argument!r}") from None
        if not sigma > 0:
            raise ValueError("scheme 'transitionary' needs init noise sigma > 0 (an exact ordinal start never moves)")
    return SharingScheme("transitionary", overlap=1.0, sigma=sigma, transition=True)


def scheme_names() -> list[str]:
    """Names of the registered schemes (``overlap`` is spelt ``overlap:<alpha>``)."""
    return sorted(_SCHEMES)


def get_scheme(spec: str) -> SharingScheme:
    """Parse ``name`` or ``name:argument`` (e.g. ``overlap:0.5``) into a registered scheme."""
    name, _, argument = spec.partition(":")
    if name not in _SCHEMES:
        raise ValueError(f"unknown sharing scheme {spec!r}; known: {', '.join(scheme_names())}")
    return _SCHEMES[name](argument if _ else None)


def normalize_columns(matrix: torch.Tensor) -> torch.Tensor:
    """Π_U of Eq. 5: scale every column to unit l2 norm (the last two dims are rows × columns)."""
    return matrix / matrix.norm(dim=-2, keepdim=True).clamp_min(1e-12)


def _gram_blocks(transforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[slice]]:
    stacked = torch.cat(list(transforms), dim=1)
    bounds, start = [], 0
    for t in transforms:
        bounds.append(slice(start, start + t.shape[1]))
        start += t.shape[1]
    return stacked, stacked.T @ stacked, bounds


def side_level(transforms: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_{a≤b} ‖T^{aᵀ} T^b‖²_F for one side of a layer (one factor of Eq. 4).

    Computed from the Gram matrix G of the concatenated transforms: Σ_{a≤b} = (‖G‖²_F + Σ_a ‖G_aa‖²_F) / 2,
    so the cost is one matrix product instead of a loop over pairs.
    """
    _, gram, bounds = _gram_blocks(transforms)
    return 0.5 * (gram.square().sum() + sum(gram[b, b].square().sum() for b in bounds))


def phi(P: Sequence[torch.Tensor], Q: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sharing level Φ_l of one layer, Eq. 4: Σ_{i≤ĩ} Σ_{o≤õ} ‖Q^{iᵀ}Q^{ĩ}‖²_F ‖P^{oᵀ}P^{õ}‖²_F.

    Exact and differentiable; uses the factorisation (Σ_{i≤ĩ}‖Q^{iᵀ}Q^{ĩ}‖²_F)(Σ_{o≤õ}‖P^{oᵀ}P^{õ}‖²_F).
    ``P`` and ``Q`` are sequences of 2-D tensors (M_out × c_o and M_in × c_i).
    """
    return side_level(P) * side_level(Q)


def pair_level(P_o: torch.Tensor, P_o2: torch.Tensor, Q_i: torch.Tensor, Q_i2: torch.Tensor) -> torch.Tensor:
    """φ(i, o; ĩ, õ) of Definition 3.1: ‖Q^{iᵀ}Q^{ĩ}‖²_F · ‖P^{oᵀ}P^{õ}‖²_F."""
    return (Q_i.T @ Q_i2).square().sum() * (P_o.T @ P_o2).square().sum()


def phi_code(P: Sequence[torch.Tensor], Q: Sequence[torch.Tensor]) -> torch.Tensor:
    """The authors' code's sharing level for one layer: L1 norm of the off-diagonal Gram entries of the
    concatenated P columns plus the same for Q (additive and unnormalised, unlike Eq. 4; see the notes).

    The code keeps P/Q per (input, output) pair and sums over groups; with the paper's one transform per
    candidate every group holds the same columns, so each side is counted once here (the code's value for a
    layer is this one with each side multiplied by the number of candidates on the other side).
    """

    def off_diagonal_l1(transforms: Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(list(transforms), dim=1)
        gram = stacked.T @ stacked
        return gram.abs().sum() - gram.diagonal().abs().sum()

    return off_diagonal_l1(P) + off_diagonal_l1(Q)


def side_level_grad(transforms: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∂/∂T^a of :func:`side_level`, in closed form: 2 T (Tᵀ T^a) + 2 T^a (T^{aᵀ} T^a), T the concatenation.

    (‖TᵀT‖²_F has gradient 4 T TᵀT and ‖T^{aᵀ}T^a‖²_F has gradient 4 T^a T^{aᵀ}T^a; both read off the Gram G.)
    """
    stacked, gram, bounds = _gram_blocks(transforms)
    return [2.0 * (stacked @ gram[:, b] + t @ gram[b, b]) for t, b in zip(transforms, bounds)]


def _level_and_grad(transforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    stacked, gram, bounds = _gram_blocks(transforms)
    level = 0.5 * (gram.square().sum() + sum(gram[b, b].square().sum() for b in bounds))
    return level, [2.0 * (stacked @ gram[:, b] + t @ gram[b, b]) for t, b in zip(transforms, bounds)]


@torch.no_grad()
def transition_step(
    P: Sequence[torch.Tensor], Q: Sequence[torch.Tensor], tau: float, update_P: bool = True, update_Q: bool = True
) -> float:
    """One projected gradient step of Eq. 5 on one layer, in place: t ← Π_U(t − τ ∇_t Φ_l), column-wise.

    ∇_{P^o} Φ_l = (Σ_{i≤ĩ}‖Q^{iᵀ}Q^{ĩ}‖²_F) · ∇_{P^o}(Σ_{o≤õ}‖P^{oᵀ}P^{õ}‖²_F) (and symmetrically for Q), both
    from the same P and Q (a simultaneous step). Returns Φ_l before the step. A side whose flag is False (a fixed
    image input or class output) is held.
    """
    level_P, grads_P = _level_and_grad(P) if update_P else (side_level(P), [])
    level_Q, grads_Q = _level_and_grad(Q) if update_Q else (side_level(Q), [])
    steps = [(t, level_Q * g) for t, g in zip(P, grads_P)] + [(t, level_P * g) for t, g in zip(Q, grads_Q)]
    for target, grad in steps:
        target.copy_(normalize_columns(target - tau * grad))
    return float(level_P * level_Q)


@torch.no_grad()
def transition_layers(layers: Sequence[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor], bool, bool]],
                      tau: float) -> torch.Tensor:
    """Eq. 5 on many layers at once, ``layers`` being (P, Q, update_P, update_Q) tuples; same result as
    :func:`transition_step` per layer. Sides of equal shapes are batched (per-op overhead, not arithmetic,
    dominates at the embedded scale). Returns the network Φ = Σ_l Φ_l before the step, as a 0-d tensor on the
    transforms' device (not read back, so a GPU step does not wait for it)."""
    sides = [side for P, Q, _, _ in layers for side in (P, Q)]
    moves = [flag for _, _, update_P, update_Q in layers for flag in (update_P, update_Q)]
    groups: dict[tuple, list[int]] = {}
    for index, side in enumerate(sides):
        groups.setdefault(tuple(tuple(t.shape) for t in side), []).append(index)
    levels = [torch.zeros(())] * len(sides)
    work = []
    for members in groups.values():
        stacked = torch.stack([torch.cat(list(sides[i]), dim=1) for i in members])
        gram = stacked.transpose(1, 2) @ stacked
        widths = [t.shape[1] for t in sides[members[0]]]
        blocks = [slice(sum(widths[:a]), sum(widths[: a + 1])) for a in range(len(widths))]
        level = 0.5 * (gram.square().sum((1, 2)) + sum(gram[:, b, b].square().sum((1, 2)) for b in blocks))
        for row, index in enumerate(members):
            levels[index] = level[row]
        if any(moves[i] for i in members):
            diagonal = torch.zeros_like(gram)
            for b in blocks:
                diagonal[:, b, b] = gram[:, b, b]
            work.append((members, stacked, 2.0 * (stacked @ gram + stacked @ diagonal), blocks))
    for members, stacked, grad, blocks in work:
        partner = torch.stack([levels[i ^ 1] for i in members]).view(-1, 1, 1)  # P pairs with Q of its layer
        updated = normalize_columns(stacked - tau * partner * grad)
        for row, index in enumerate(members):
            if moves[index]:
                for target, b in zip(sides[index], blocks):
                    target.copy_(updated[row, :, b])
    return sum(levels[2 * layer] * levels[2 * layer + 1] for layer in range(len(layers)))


def random_semi_orthogonal(rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random M × c matrix with orthonormal columns (QR of a Gaussian), for the Theorem 3.1 checks."""
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
