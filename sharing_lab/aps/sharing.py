"""The sharing level Φ (Eq. 4) and its projected-gradient transition (Eq. 5): the mathematics of APS.

Paper Sections 3.1, 3.2 and 3.4. A layer with candidate widths c_1 < … < c_A and meta width M keeps one
transform T^a ∈ R^{M×c_a} per candidate on each side (P^o for outputs, Q^i for inputs). How transforms start
and how they move is a sharing scheme's business (:mod:`sharing_lab.aps.schemes`); this module only computes.
Every Φ here comes from one formula, :func:`gram_level`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalize_columns(matrix: torch.Tensor) -> torch.Tensor:
    """Π_U of Eq. 5: scale every column to unit l2 norm (the last two dims are rows × columns)."""
    return matrix / matrix.norm(dim=-2, keepdim=True).clamp_min(1e-12)


def _blocks(widths: Sequence[int]) -> list[slice]:
    bounds, start = [], 0
    for width in widths:
        bounds.append(slice(start, start + width))
        start += width
    return bounds


def gram_level(gram: torch.Tensor, blocks: Sequence[slice]) -> torch.Tensor:
    """Σ_{a≤b} ‖T^{aᵀ} T^b‖²_F from the Gram matrix G = TᵀT of the concatenated transforms (one factor of Eq. 4):
    (‖G‖²_F + Σ_a ‖G_aa‖²_F) / 2. ``gram`` may carry leading batch dimensions."""
    return 0.5 * (gram.square().sum((-2, -1)) + sum(gram[..., b, b].square().sum((-2, -1)) for b in blocks))


def side_level(transforms: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_{a≤b} ‖T^{aᵀ} T^b‖²_F for one side of a layer (one factor of Eq. 4), one matrix product."""
    stacked = torch.cat(list(transforms), dim=1)
    return gram_level(stacked.T @ stacked, _blocks([t.shape[1] for t in transforms]))


def phi(P: Sequence[torch.Tensor], Q: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sharing level Φ_l of one layer, Eq. 4: Σ_{i≤ĩ} Σ_{o≤õ} ‖Q^{iᵀ}Q^{ĩ}‖²_F ‖P^{oᵀ}P^{õ}‖²_F.

    Exact and differentiable; uses the factorisation (Σ_{i≤ĩ}‖Q^{iᵀ}Q^{ĩ}‖²_F)(Σ_{o≤õ}‖P^{oᵀ}P^{õ}‖²_F).
    ``P`` and ``Q`` are sequences of 2-D tensors (M_out × c_o and M_in × c_i).
    """
    return side_level(P) * side_level(Q)


def pair_level(P_o: torch.Tensor, P_o2: torch.Tensor, Q_i: torch.Tensor | None = None,
               Q_i2: torch.Tensor | None = None) -> torch.Tensor:
    """φ(i, o; ĩ, õ) of Definition 3.1: ‖Q^{iᵀ}Q^{ĩ}‖²_F · ‖P^{oᵀ}P^{õ}‖²_F (float64; no Q: a depthwise layer,
    whose input factor is 1)."""
    value = (P_o.T @ P_o2).square().sum().double()
    if Q_i is not None:
        value = value * (Q_i.T @ Q_i2).square().sum().double()
    return value


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
    stacked = torch.cat(list(transforms), dim=1)
    gram = stacked.T @ stacked
    blocks = _blocks([t.shape[1] for t in transforms])
    return [2.0 * (stacked @ gram[:, b] + t @ gram[b, b]) for t, b in zip(transforms, blocks)]


@torch.no_grad()
def transition_step(
    P: Sequence[torch.Tensor], Q: Sequence[torch.Tensor], tau: float, update_P: bool = True, update_Q: bool = True
) -> float:
    """One projected gradient step of Eq. 5 on one layer, in place: t ← Π_U(t − τ ∇_t Φ_l), column-wise.

    ∇_{P^o} Φ_l = (Σ_{i≤ĩ}‖Q^{iᵀ}Q^{ĩ}‖²_F) · ∇_{P^o}(Σ_{o≤õ}‖P^{oᵀ}P^{õ}‖²_F) (and symmetrically for Q), both
    from the same P and Q (a simultaneous step). Returns Φ_l before the step. A side whose flag is False (a fixed
    image input or class output) is held.
    """
    return float(transition_layers([(P, Q, update_P, update_Q)], tau))


@torch.no_grad()
def transition_layers(layers: Sequence[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor], bool, bool]],
                      tau: float) -> torch.Tensor:
    """Eq. 5 on many layers at once, ``layers`` being (P, Q, update_P, update_Q) tuples, in place. Sides of equal
    shapes are batched (per-op overhead, not arithmetic, dominates at the embedded scale). Returns the network
    Φ = Σ_l Φ_l before the step, as a 0-d tensor on the transforms' device (not read back, so a GPU step does
    not wait for it). A supernet whose transforms live in :class:`SideBank` buffers takes the same arithmetic in
    a few ops per bank instead (:class:`FusedTransition`)."""
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
        blocks = _blocks([t.shape[1] for t in sides[members[0]]])
        level = gram_level(gram, blocks)
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


class SideBank:
    """The transforms of ``count`` sides with candidates c_1 … c_A and meta width M in one buffer (S, M, Σc + 1).

    Side s's T^a is the view ``buffer[s, :, off_a : off_a + c_a]`` (what its module holds as a buffer), so the
    concatenation [T^1 … T^A] of every side is one strided view (:attr:`stacked`, the matrix of Eq. 5) and the
    last column stays zero: the padding that :meth:`gather` reads to hand out padded P^{oᵀ} / Q^{iᵀ} for the
    batched Eq. 2 (sharing_lab.aps.layers.KernelGroup).
    """

    def __init__(self, widths: Sequence[int], meta: int, count: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.widths, self.meta, self.count = tuple(int(w) for w in widths), int(meta), int(count)
        self.blocks = _blocks(self.widths)
        self.columns = sum(self.widths)
        self.pad = max(self.widths)
        self.buffer = torch.zeros(count, meta, self.columns + 1, dtype=dtype, device=device)
        self.stacked = self.buffer[:, :, : self.columns]
        self._rows_view = self.buffer.transpose(1, 2)  # (S, Σc + 1, M): row r of side s is column r of its T
        mask = torch.zeros(self.columns, self.columns, dtype=torch.bool)
        for b in self.blocks:
            mask[b, b] = True
        self.block_mask = mask.to(self.buffer.device)
        self._rows: dict[tuple[int, int], torch.Tensor] = {}

    def view(self, side: int, candidate: int) -> torch.Tensor:
        """T^a of ``side`` (M × c_a), a view into the buffer."""
        b = self.blocks[candidate]
        return self.buffer[side, :, b]

    def rows(self, side: int, candidate: int) -> torch.Tensor:
        """(2, max c) indices (side, column) that :meth:`gather` turns into T^{aᵀ} padded with zero rows (cached)."""
        key = (side, candidate)
        if key not in self._rows:
            b = self.blocks[candidate]
            columns = torch.full((self.pad,), self.columns, dtype=torch.long)
            columns[: b.stop - b.start] = torch.arange(b.start, b.stop)
            self._rows[key] = torch.stack([torch.full_like(columns, side), columns]).to(self.buffer.device)
        return self._rows[key]

    def gather(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """The transposed, zero-padded transforms named by ``rows`` (from :meth:`rows`): (N, max c, M), one op."""
        index = torch.cat(list(rows), dim=1) if len(rows) > 1 else rows[0]
        return self._rows_view[index[0], index[1]].view(len(rows), self.pad, self.meta)


# The largest τ·(p·∇Φ_l) a tracking step takes: at 1 a column would cancel before Π_U rescales it.
RADIAL_LIMIT = 0.5


class FusedTransition:
    """Eq. 5 on every movable layer of a network whose transforms live in :class:`SideBank` buffers.

    The arithmetic of :func:`transition_layers` op for op (Gram, Eq. 4 factors by :func:`gram_level`, closed-form
    gradient, partner factor, Π_U), so on the CPU the transforms come out bitwise equal, in a few ops per bank
    instead of a few per layer. ``banks`` with per-side ``moves`` flags; ``fixed`` the constant Eq. 4 factors
    of sides outside the banks (image channels, classes, a depthwise layer's 1); ``pairs`` (n_layers, 2) and
    ``partners`` (one per bank side) index the vector [bank factors…, fixed].
    """

    def __init__(self, banks: Sequence[SideBank], moves: Sequence[Sequence[bool]], fixed: torch.Tensor,
                 pairs: torch.Tensor, partners: torch.Tensor) -> None:
        self.banks, self.fixed = list(banks), fixed
        self.moves = [None if all(flags) else torch.tensor(flags, device=bank.buffer.device).view(-1, 1, 1)
                      for bank, flags in zip(banks, moves)]
        self.moving = [any(flags) for flags in moves]
        self.pairs, self.partners = pairs, partners
        layer_of = torch.zeros(len(partners), dtype=torch.long)
        for layer, (p, q) in enumerate(pairs.tolist()):
            for index in (p, q):
                if index < len(partners):
                    layer_of[index] = layer
        self.layer_of = layer_of.to(pairs.device)

    def _levels(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        grams, levels = [], []
        for bank in self.banks:
            stacked = bank.stacked
            gram = torch.bmm(stacked.transpose(1, 2), stacked)
            grams.append(gram)
            levels.append(gram_level(gram, bank.blocks))
        factors = torch.cat([*levels, self.fixed])
        return grams, factors, factors.index_select(0, self.partners)

    @torch.no_grad()
    def __call__(self, tau: float) -> torch.Tensor:
        grams, factors, partner_all = self._levels()
        start = 0
        for bank, gram, moves, moving in zip(self.banks, grams, self.moves, self.moving):
            partner = partner_all[start: start + bank.count].view(-1, 1, 1)
            start += bank.count
            if not moving:
                continue
            stacked = bank.stacked
            diagonal = gram.where(bank.block_mask, 0.0)
            grad = 2.0 * (torch.bmm(stacked, gram) + torch.bmm(stacked, diagonal))
            updated = normalize_columns(stacked - tau * partner * grad)
            stacked.copy_(updated if moves is None else torch.where(moves, updated, stacked))
        pair = factors[self.pairs]
        return (pair[:, 0] * pair[:, 1]).sum()

    @torch.no_grad()
    def track(self, targets: torch.Tensor, max_move: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One Eq. 5 step with a step size per layer that brings each Φ_l to ``targets[l]`` to first order
        (:mod:`sharing_lab.aps.phi_schedule`), in place. Returns (Φ_l before the step, the step sizes τ_l), on the
        device, not read back.

        After Π_U a column moves by −τ times the part of ∇Φ_l tangent to its unit sphere, so to first order
        Φ_l falls by τ_l·‖∇⊥Φ_l‖² (summed over the layer's moving columns): τ_l = (Φ_l − target_l)/‖∇⊥Φ_l‖²,
        0 where Φ_l is already at or below its target, at most what moves a column by ``max_move``, and at most
        half the inverse of the largest radial component p·∇Φ_l (beyond that Π_U's rescaling no longer bounds
        the move: at τ·p·∇Φ_l ≥ 1 the column would cancel or flip)."""
        grams, factors, partner_all = self._levels()
        pair = factors[self.pairs]
        layer_phi = pair[:, 0] * pair[:, 1]
        layers = len(layer_phi)
        rate = torch.zeros(layers, dtype=layer_phi.dtype, device=layer_phi.device)
        largest, outward = torch.zeros_like(rate), torch.zeros_like(rate)
        work, start = [], 0
        for bank, gram, moves, moving in zip(self.banks, grams, self.moves, self.moving):
            partner = partner_all[start: start + bank.count].view(-1, 1, 1)
            layer = self.layer_of[start: start + bank.count]
            start += bank.count
            if not moving:
                continue
            stacked = bank.stacked
            diagonal = gram.where(bank.block_mask, 0.0)
            grad = partner * 2.0 * (torch.bmm(stacked, gram) + torch.bmm(stacked, diagonal))
            radial = (stacked * grad).sum(-2, keepdim=True)
            tangent = grad - stacked * radial
            if moves is not None:
                tangent, radial = tangent.where(moves, 0.0), radial.where(moves, 0.0)
            rate.index_add_(0, layer, tangent.square().sum((-2, -1)))
            largest.scatter_reduce_(0, layer, tangent.norm(dim=-2).amax(-1), "amax")
            outward.scatter_reduce_(0, layer, radial.abs().amax((-2, -1)), "amax")
            work.append((bank, moves, layer, grad))
        excess = (layer_phi - targets).clamp_min(0.0)
        tau = torch.where(rate > 0, excess / rate.clamp_min(1e-30), 0.0)
        tau = torch.minimum(tau, max_move / largest.clamp_min(1e-30))
        # Eq. 5 steps along ∇Φ, radial part included: a step with τ·(p·∇Φ) near 1 would cancel (or flip) a
        # column before Π_U rescales it, so the trust region also bounds the radial part
        tau = torch.minimum(tau, RADIAL_LIMIT / outward.clamp_min(1e-30))
        for bank, moves, layer, grad in work:
            stacked = bank.stacked
            updated = normalize_columns(stacked - tau[layer].view(-1, 1, 1) * grad)
            stacked.copy_(updated if moves is None else torch.where(moves, updated, stacked))
        return layer_phi, tau


def random_semi_orthogonal(rows: int, cols: int, generator: torch.Generator | None = None,
                           batch: tuple[int, ...] = ()) -> torch.Tensor:
    """Random ``rows × cols`` matrices with orthonormal columns (float64, leading dims ``batch``): QR of a
    Gaussian with the signs fixed by diag R, so the columns are Haar-distributed (Theorem 3.1 checks)."""
    gaussian = torch.randn(*batch, rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
