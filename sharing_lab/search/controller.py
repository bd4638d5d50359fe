"""The LSTM controller π(θ), its REINFORCE update and beam search (paper Section 2.1; ENAS-style, see notes).

Input per decision: [embedding(previous action); one-hot(decision index); flops_left], with flops_left =
(F_target − F_min(prefix)) / F_target, where F_min(prefix) is the MACs of the cheapest completion of the
decisions taken so far (0 without a target). Two stacked LSTMCells, a linear head over candidates.

Sampling draws every architecture a step needs in one batched pass over the decisions (one fused two-layer
LSTM step per decision) with torch.multinomial's own rule, argmax p / q with q ~ Exp(1) drawn row by row, so
the draws are those of sequential :meth:`Controller.sample` calls; the log-probability and entropy that
REINFORCE differentiates come from one teacher-forced LSTM call over the sequence, with the cells' weights.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FlopsLeft = Callable[[Sequence[int]], float]


def reward(accuracy: float, macs: float, target: float | None, beta: float = -0.1) -> float:
    """MnasNet-style soft constraint (notes): acc if F ≤ F_target, else acc · (F / F_target)^β."""
    if target is None or macs <= target:
        return accuracy
    return accuracy * (macs / target) ** beta


@dataclass
class Sample:
    arch: tuple[int, ...]
    log_prob: torch.Tensor  # Σ_l log π_l, differentiable when sampled with grad
    entropy: torch.Tensor  # Σ_l H_l
    probs: list[torch.Tensor]  # per decision softmax (for records)


class Controller(nn.Module):
    """Autoregressive policy over one candidate index per decision."""

    def __init__(self, num_candidates: Sequence[int], hidden: int = 100, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.num_candidates = tuple(num_candidates)
        self.max_candidates = max(self.num_candidates)
        self.start_token = self.max_candidates
        self.embedding = nn.Embedding(self.max_candidates + 1, hidden)
        input_size = hidden + len(self.num_candidates) + 1
        self.cells = nn.ModuleList([nn.LSTMCell(input_size, hidden), nn.LSTMCell(hidden, hidden)])
        self.head = nn.Linear(hidden, self.max_candidates)
        self.register_buffer("positions", torch.eye(len(self.num_candidates)), persistent=False)  # one-hot rows
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-0.1, 0.1, generator=generator)
            self.head.bias.zero_()
        self.hidden = hidden

    @property
    def num_decisions(self) -> int:
        return len(self.num_candidates)

    def _initial_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        zeros = torch.zeros(1, self.hidden, device=self.head.weight.device)
        return [(zeros, zeros) for _ in self.cells]

    def step(self, state, previous: int, index: int, flops_left: float):
        """Logits of decision ``index`` (masked to its candidates) and the next state."""
        device = self.head.weight.device
        extra = torch.tensor([[flops_left]], device=device)
        x = torch.cat([self.embedding.weight[previous: previous + 1], self.positions[index: index + 1], extra], dim=1)
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        logits = self.head(x)[0]
        count = self.num_candidates[index]
        if count < self.max_candidates:
            logits = logits.masked_fill(torch.arange(self.max_candidates, device=device) >= count, float("-inf"))
        return logits, new_state

    def sample(
        self, flops_left: FlopsLeft | None = None, generator: torch.Generator | None = None, greedy: bool = False,
        arch_only: bool = False,
    ) -> Sample:
        """Sample an architecture (differentiable log-probability when grad is enabled). ``arch_only`` skips the
        log-probability, entropy and probabilities (NaN / empty), drawing the same architecture."""
        return self.sample_many(flops_left, generator, (arch_only,), greedy)[0]

    def sample_many(self, flops_left: FlopsLeft | None, generator: torch.Generator | None,
                    arch_only: Sequence[bool], greedy: bool = False) -> list[Sample]:
        """``len(arch_only)`` architectures in one batched pass, drawn as that many :meth:`sample` calls in a row
        draw them (same generator use); those with ``arch_only`` False get their log-probability, entropy and
        probabilities from one teacher-forced LSTM call (differentiable when grad is enabled)."""
        archs, lefts = self._draw(len(arch_only), flops_left, generator, greedy)
        forced = [row for row, only in enumerate(arch_only) if not only]
        samples = [Sample(arch, self._nan, self._nan, []) for arch in archs]
        if forced:
            log_prob, entropy, probs = self._forced([archs[r] for r in forced], [lefts[r] for r in forced])
            for column, row in enumerate(forced):
                samples[row] = Sample(archs[row], log_prob[column], entropy[column], list(probs[:, column].unbind(0)))
        return samples

    @property
    def _nan(self) -> torch.Tensor:
        """The NaN an architecture-only sample carries as log-probability and entropy (made once)."""
        if "_nan_value" not in self.__dict__:
            self.__dict__["_nan_value"] = torch.tensor(float("nan"))
        return self.__dict__["_nan_value"]

    def _lstm_weights(self) -> list[torch.Tensor]:
        """The two cells' parameters in the order of a fused two-layer LSTM (same gates, same weights)."""
        return [p for cell in self.cells for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]

    def _logits(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Head logits over candidates, -inf where ``mask`` (a decision without that candidate) is set."""
        logits = self.head(hidden)
        return logits if mask is None else logits.masked_fill(mask, float("-inf"))

    @property
    def _mask(self) -> torch.Tensor | None:
        """(decisions, max candidates), True where a decision has no such candidate; None when none is missing."""
        if "_mask_value" not in self.__dict__:
            counts = torch.tensor(self.num_candidates).view(-1, 1)
            missing = torch.arange(self.max_candidates).view(1, -1) >= counts
            self.__dict__["_mask_value"] = missing if bool(missing.any()) else None
        mask = self.__dict__["_mask_value"]
        return None if mask is None else mask.to(self.head.weight.device)

    @torch.no_grad()
    def _draw(self, count: int, flops_left: FlopsLeft | None, generator: torch.Generator | None,
              greedy: bool) -> tuple[list[tuple[int, ...]], list[list[float]]]:
        """``count`` architectures, decision by decision, all rows in one LSTM step; and their flops_left inputs.

        Draw as torch.multinomial(p, 1) draws: argmax p / q, q ~ Exp(1) with one variate per candidate (the
        variates of row r are those of the r-th sequential call). Greedy: argmax p."""
        device, weights, mask = self.head.weight.device, self._lstm_weights(), self._mask
        steps, width = self.num_decisions, self.max_candidates
        noise = None if greedy else torch.empty(count, steps, width).exponential_(generator=generator)
        state = (torch.zeros(2, count, self.hidden, device=device),) * 2
        previous = torch.full((count,), self.start_token, dtype=torch.long, device=device)
        archs: list[list[int]] = [[] for _ in range(count)]
        lefts: list[list[float]] = [[] for _ in range(count)]
        chosen = []
        for index in range(steps):
            left = [flops_left(arch) if flops_left is not None else 0.0 for arch in archs]
            for row, value in enumerate(left):
                lefts[row].append(value)
            x = torch.cat([self.embedding.weight.index_select(0, previous),
                           self.positions[index].expand(count, -1), torch.tensor(left, device=device).view(-1, 1)], 1)
            out, *state = torch._VF.lstm(x.unsqueeze(0), state, weights, True, 2, 0.0, False, False, False)
            distribution = F.softmax(self._logits(out[0], None if mask is None else mask[index]), dim=-1)
            chosen.append(distribution)
            score = distribution if noise is None else distribution.cpu() / noise[:, index]
            previous = score.argmax(-1).to(device)
            for arch, action in zip(archs, previous.tolist()):
                arch.append(action)
        if not bool(torch.isfinite(torch.stack(chosen)).all()):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return [tuple(arch) for arch in archs], lefts

    def _forced(self, archs: Sequence[Sequence[int]], lefts: Sequence[Sequence[float]]):
        """log π(a), entropy Σ_l H_l (both (count,)) and probabilities (decisions, count, candidates) of ``archs``
        by teacher forcing: one LSTM call over the whole sequence of every row."""
        device, steps, count = self.head.weight.device, self.num_decisions, len(archs)
        actions = torch.tensor(archs, device=device).T  # (decisions, count)
        previous = torch.cat([torch.full((1, count), self.start_token, device=device), actions[:-1]])
        x = torch.cat([self.embedding(previous), self.positions.unsqueeze(1).expand(steps, count, steps),
                       torch.tensor(lefts, device=device).T.unsqueeze(-1)], 2)
        state = (torch.zeros(2, count, self.hidden, device=device),) * 2
        out = torch._VF.lstm(x, state, self._lstm_weights(), True, 2, 0.0, torch.is_grad_enabled(), False, False)[0]
        mask = self._mask
        logits = self._logits(out, None if mask is None else mask.unsqueeze(1))
        distribution = F.softmax(logits, dim=-1)
        log_dist = F.log_softmax(logits, dim=-1)
        log_prob = log_dist.gather(2, actions.unsqueeze(-1)).sum((0, 2))
        entropy = -(distribution * log_dist.masked_fill(distribution == 0, 0.0)).sum((0, 2))
        return log_prob, entropy, distribution.detach()

    def log_prob(self, arch: Sequence[int], flops_left: FlopsLeft | None = None) -> float:
        """log π(arch): the sequence log-likelihood used to rank architectures."""
        state, previous, total = self._initial_state(), self.start_token, 0.0
        with torch.no_grad():
            for index, action in enumerate(arch):
                left = flops_left(list(arch[:index])) if flops_left is not None else 0.0
                logits, state = self.step(state, previous, index, left)
                total += float(F.log_softmax(logits, dim=-1)[action])
                previous = action
        return total


class Reinforce:
    """REINFORCE with an EMA baseline and an entropy bonus (notes, Controller and reward):
    loss = −(Σ_l log π_l)(R − b) − β_ent Σ_l H_l;  b ← d·b + (1 − d)·R."""

    def __init__(self, controller: Controller, lr: float, entropy_weight: float, baseline_decay: float) -> None:
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=1e-3,
                                          foreach=True)
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.baseline: float | None = None

    def update(self, sample: Sample, value: float) -> float:
        """One policy-gradient step for ``sample`` with reward ``value``; returns the advantage."""
        if self.baseline is None:
            self.baseline = value
        advantage = value - self.baseline
        loss = -sample.log_prob * advantage - self.entropy_weight * sample.entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * value
        return advantage

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint of the per-parameter loop: same update, fused
            group["foreach"] = True
        self.baseline = state["baseline"]


@torch.no_grad()
def beam_search(
    controller: Controller, top: int, flops_left: FlopsLeft | None = None, max_expansions: int = 5000,
    width: int | None = None,
) -> list[tuple[tuple[int, ...], float]]:
    """The ``top`` most likely architectures under the controller with their log-probabilities, best first.

    First a best-first search over prefixes ordered by log-likelihood: every step adds a non-positive
    log-probability, so complete sequences leave the queue in exact order of likelihood (the exact top-N).
    A near-uniform policy makes that search exponential; after ``max_expansions`` it falls back to a
    fixed-width beam (``width``, default max(16·top, 128) prefixes per decision), which is then approximate.
    """
    counter = itertools.count()
    queue = [(-0.0, next(counter), (), controller._initial_state(), controller.start_token)]
    results: list[tuple[tuple[int, ...], float]] = []
    expansions = 0
    while queue and len(results) < top:
        negative, _, prefix, state, previous = heapq.heappop(queue)
        if len(prefix) == controller.num_decisions:
            results.append((prefix, -negative))
            continue
        expansions += 1
        if expansions > max_expansions:
            return _fixed_width_beam(controller, top, flops_left, width or max(16 * top, 128))
        for action, score, new_state in _children(controller, prefix, state, previous, -negative, flops_left):
            heapq.heappush(queue, (-score, next(counter), prefix + (action,), new_state, action))
    return results


@torch.no_grad()
def exact_log_probs(controller: Controller, flops_left: FlopsLeft | None = None,
                    limit: int = 100_000) -> dict[tuple[int, ...], float]:
    """log π(a) of every architecture of the space, exactly: the controller is autoregressive, so π(a) is the
    product of its per-decision probabilities along a; the prefix tree is walked level by level, every prefix of
    a level in one batched LSTM step. Refuses spaces of more than ``limit`` architectures."""
    size = math.prod(controller.num_candidates)
    if size > limit:
        raise ValueError(f"exact enumeration of {size} architectures exceeds the limit of {limit}")
    device, weights, mask = controller.head.weight.device, controller._lstm_weights(), controller._mask
    prefixes: list[tuple[int, ...]] = [()]
    scores = torch.zeros(1, device=device)
    state = [torch.zeros(2, 1, controller.hidden, device=device)] * 2
    previous = torch.full((1,), controller.start_token, dtype=torch.long, device=device)
    for index, count in enumerate(controller.num_candidates):
        rows = len(prefixes)
        left = [flops_left(list(prefix)) if flops_left is not None else 0.0 for prefix in prefixes]
        x = torch.cat([controller.embedding.weight.index_select(0, previous),
                       controller.positions[index].expand(rows, -1), torch.tensor(left, device=device).view(-1, 1)], 1)
        out, *state = torch._VF.lstm(x.unsqueeze(0), state, weights, True, 2, 0.0, False, False, False)
        log_dist = F.log_softmax(controller._logits(out[0], None if mask is None else mask[index]), dim=-1)
        scores = (scores.unsqueeze(1) + log_dist[:, :count]).reshape(-1)
        state = [tensor.repeat_interleave(count, dim=1) for tensor in state]
        previous = torch.arange(count, device=device).repeat(rows)
        prefixes = [prefix + (action,) for prefix in prefixes for action in range(count)]
    return dict(zip(prefixes, scores.tolist()))


def _children(controller: Controller, prefix, state, previous, score, flops_left):
    index = len(prefix)
    left = flops_left(list(prefix)) if flops_left is not None else 0.0
    logits, new_state = controller.step(state, previous, index, left)
    log_dist = F.log_softmax(logits, dim=-1)
    return [(action, score + float(log_dist[action]), new_state) for action in range(controller.num_candidates[index])]


def _fixed_width_beam(controller: Controller, top: int, flops_left: FlopsLeft | None, width: int):
    beam = [((), 0.0, controller._initial_state(), controller.start_token)]
    for _ in range(controller.num_decisions):
        candidates = []
        for prefix, score, state, previous in beam:
            for action, new_score, new_state in _children(controller, prefix, state, previous, score, flops_left):
                candidates.append((prefix + (action,), new_score, new_state, action))
        candidates.sort(key=lambda item: -item[1])
        beam = candidates[:width]
    return [(prefix, score) for prefix, score, _, _ in beam[:top]]
