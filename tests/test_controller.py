"""The controller: reward (MnasNet soft constraint), sampling, REINFORCE and the exact top-N beam search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sharing_lab.search.controller import Controller, Reinforce, Sample, beam_search, reward

CANDIDATES = (2, 3, 2, 3)  # 36 architectures; unequal counts exercise the masking of missing candidates


def _sharp_controller(num_candidates=CANDIDATES, seed: int = 0, scale: float = 100.0) -> Controller:
    """A tiny controller whose policy is far from uniform (so the ranking is non-trivial and tie-free)."""
    controller = Controller(num_candidates, hidden=8, seed=seed)
    generator = torch.Generator().manual_seed(1234 + seed)
    with torch.no_grad():
        controller.head.weight.mul_(scale)
        controller.head.bias.copy_(torch.randn(controller.head.bias.shape, generator=generator))
    return controller


def _flops_left(prefix) -> float:
    """A prefix-dependent controller input, like the search's (F_target − F_min(prefix)) / F_target."""
    return 1.0 - 0.2 * sum(prefix)


def _all_archs(num_candidates):
    return list(itertools.product(*(range(n) for n in num_candidates)))


def _ranked(controller, flops_left):
    scored = [(arch, controller.log_prob(arch, flops_left)) for arch in _all_archs(controller.num_candidates)]
    return sorted(scored, key=lambda item: -item[1])


# --- reward ---------------------------------------------------------------------------------------------------
def test_reward_without_target_is_the_accuracy():
    assert reward(0.7, 5e6, None) == 0.7
    assert reward(0.7, 5e6, None, beta=-0.5) == 0.7


def test_reward_at_or_below_target_is_the_accuracy():
    assert reward(0.8, 1e6, 2e6, beta=-0.1) == 0.8
    assert reward(0.8, 2e6, 2e6, beta=-0.1) == 0.8


def test_reward_above_target_is_penalised_by_the_soft_constraint():
    value = reward(0.8, 4e6, 2e6, beta=-0.1)
    assert value == pytest.approx(0.8 * 2.0 ** -0.1, rel=1e-12)
    assert value < 0.8
    # further above the target: smaller reward
    assert reward(0.8, 8e6, 2e6, beta=-0.1) < value


# --- sampling ---------------------------------------------------------------------------------------------------
def test_sample_respects_candidate_counts_and_gives_normalised_probs():
    controller = _sharp_controller(scale=1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        sample = controller.sample(_flops_left, generator)
        assert len(sample.arch) == len(CANDIDATES)
        for index, (action, count) in enumerate(zip(sample.arch, CANDIDATES)):
            assert 0 <= action < count
            probs = sample.probs[index]
            assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
            assert torch.all(probs[count:] == 0)  # masked candidates have probability 0


def test_sample_log_prob_matches_sequence_log_likelihood():
    controller = _sharp_controller(scale=2.0)
    generator = torch.Generator().manual_seed(3)
    for _ in range(10):
        sample = controller.sample(_flops_left, generator)
        assert float(sample.log_prob.detach()) == pytest.approx(controller.log_prob(sample.arch, _flops_left), abs=1e-5)


def test_log_probs_of_all_architectures_sum_to_one():
    controller = _sharp_controller(scale=3.0)
    total = sum(math.exp(lp) for _, lp in _ranked(controller, _flops_left))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_sampling_is_deterministic_given_generator_state():
    first, second = _sharp_controller(scale=1.0), _sharp_controller(scale=1.0)
    generator = torch.Generator().manual_seed(42)
    state = generator.get_state()
    archs_a = [first.sample(_flops_left, generator).arch for _ in range(20)]
    generator.set_state(state)
    archs_b = [second.sample(_flops_left, generator).arch for _ in range(20)]
    assert archs_a == archs_b
    # and the draws are genuinely random (not a constant policy)
    assert len(set(archs_a)) > 1
    other = torch.Generator().manual_seed(43)
    assert [first.sample(_flops_left, other).arch for _ in range(20)] != archs_a


def test_controller_initialisation_is_seeded():
    a, b, c = Controller(CANDIDATES, 8, seed=5), Controller(CANDIDATES, 8, seed=5), Controller(CANDIDATES, 8, seed=6)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


# --- beam search --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flops_left", [None, _flops_left], ids=["no-target", "flops-left"])
@pytest.mark.parametrize("top", [1, 5, 36])
def test_beam_search_is_the_exact_top_n(top, flops_left):
    controller = _sharp_controller()
    expected = _ranked(controller, flops_left)[:top]
    got = beam_search(controller, top, flops_left)
    assert len(got) == top
    assert [arch for arch, _ in got] == [arch for arch, _ in expected]
    for (_, lp_got), (_, lp_expected) in zip(got, expected):
        assert lp_got == pytest.approx(lp_expected, abs=1e-5)
    scores = [lp for _, lp in got]
    assert scores == sorted(scores, reverse=True)
    assert len({arch for arch, _ in got}) == top


def test_beam_search_asks_for_more_than_exist():
    controller = _sharp_controller()
    got = beam_search(controller, 100, _flops_left)
    assert len(got) == 36
    assert {arch for arch, _ in got} == set(_all_archs(CANDIDATES))


def test_beam_search_policy_is_sharp_enough_for_a_meaningful_test():
    """Guards the fixture: the ranking above must not be of a near-uniform policy."""
    ranked = _ranked(_sharp_controller(), _flops_left)
    assert ranked[0][1] - ranked[-1][1] > 5.0
    gaps = [a[1] - b[1] for a, b in zip(ranked, ranked[1:])]
    assert min(gaps[:8]) > 1e-4  # no near-ties among the first ranks


@pytest.mark.parametrize("flops_left", [None, _flops_left], ids=["no-target", "flops-left"])
@pytest.mark.parametrize("top", [1, 4, 10])
def test_beam_search_fixed_width_fallback_is_exact_when_wide_enough(top, flops_left):
    controller = _sharp_controller(seed=1)
    expected = _ranked(controller, flops_left)[:top]
    got = beam_search(controller, top, flops_left, max_expansions=1, width=36)
    assert [arch for arch, _ in got] == [arch for arch, _ in expected]
    for (_, lp_got), (_, lp_expected) in zip(got, expected):
        assert lp_got == pytest.approx(lp_expected, abs=1e-5)


def test_beam_search_fixed_width_fallback_is_used_when_expansions_run_out():
    """Width 1 is a greedy decode: with max_expansions=1 the result is the greedy sample, not the exact top-1
    list of length ``top`` (it has only one prefix per step)."""
    controller = _sharp_controller(seed=2)
    greedy = controller.sample(_flops_left, greedy=True).arch
    got = beam_search(controller, 3, _flops_left, max_expansions=1, width=1)
    assert [arch for arch, _ in got] == [greedy]


# --- REINFORCE ----------------------------------------------------------------------------------------------------
def test_reinforce_first_update_has_zero_advantage_then_tracks_baseline():
    controller = _sharp_controller(scale=1.0)
    learner = Reinforce(controller, lr=1e-3, entropy_weight=0.0, baseline_decay=0.5)
    generator = torch.Generator().manual_seed(0)
    assert learner.update(controller.sample(_flops_left, generator), 0.4) == 0.0
    assert learner.baseline == pytest.approx(0.4)
    assert learner.update(controller.sample(_flops_left, generator), 1.0) == pytest.approx(0.6)
    assert learner.baseline == pytest.approx(0.5 * 0.4 + 0.5 * 1.0)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
def test_reinforce_single_step_moves_log_prob_with_the_advantage(sign):
    controller = _sharp_controller(scale=1.0)
    learner = Reinforce(controller, lr=1e-3, entropy_weight=0.0, baseline_decay=0.9)
    generator = torch.Generator().manual_seed(7)
    learner.update(controller.sample(_flops_left, generator), 0.5)  # sets the baseline to 0.5
    sample = controller.sample(_flops_left, generator)
    before = controller.log_prob(sample.arch, _flops_left)
    advantage = learner.update(sample, 0.5 + sign * 0.5)
    assert advantage == pytest.approx(sign * 0.5)
    after = controller.log_prob(sample.arch, _flops_left)
    assert (after - before) * sign > 0


def _forced_sample(controller: Controller, arch, flops_left) -> Sample:
    """A :class:`Sample` of a given architecture with a differentiable log-probability (as sampling makes it)."""
    state, previous = controller._initial_state(), controller.start_token
    log_prob, entropy, probs = 0.0, 0.0, []
    for index, action in enumerate(arch):
        logits, state = controller.step(state, previous, index, flops_left(list(arch[:index])))
        log_dist = torch.log_softmax(logits, dim=-1)
        dist = log_dist.exp()
        log_prob = log_prob + log_dist[action]
        entropy = entropy - (dist * log_dist.masked_fill(dist == 0, 0.0)).sum()
        probs.append(dist.detach())
        previous = action
    return Sample(tuple(arch), log_prob, entropy, probs)


def test_forced_sample_helper_matches_controller_sampling():
    controller = _sharp_controller(scale=1.0)
    sample = controller.sample(_flops_left, torch.Generator().manual_seed(5))
    forced = _forced_sample(controller, sample.arch, _flops_left)
    assert float(forced.log_prob.detach()) == pytest.approx(float(sample.log_prob.detach()), abs=1e-6)
    assert float(forced.entropy.detach()) == pytest.approx(float(sample.entropy.detach()), abs=1e-6)


def test_reinforce_repeated_updates_raise_log_prob_of_rewarded_architecture():
    """Alternating updates: architecture A always earns 1, B always 0, so A's advantage stays positive."""
    controller = _sharp_controller(scale=1.0)
    learner = Reinforce(controller, lr=1e-2, entropy_weight=0.0, baseline_decay=0.9)
    rewarded, punished = (1, 2, 0, 1), (0, 0, 1, 2)
    before_a = controller.log_prob(rewarded, _flops_left)
    before_b = controller.log_prob(punished, _flops_left)
    history = []
    for _ in range(40):
        history.append(learner.update(_forced_sample(controller, punished, _flops_left), 0.0))
        history.append(learner.update(_forced_sample(controller, rewarded, _flops_left), 1.0))
    assert all(adv > 0 for adv in history[1::2])  # rewarded: above the baseline after the first round
    assert all(adv < 0 for adv in history[2::2])
    after_a = controller.log_prob(rewarded, _flops_left)
    after_b = controller.log_prob(punished, _flops_left)
    assert after_a > before_a + 1.0
    assert after_b < before_b - 1.0
    assert beam_search(controller, 1, _flops_left)[0][0] == rewarded


def test_reinforce_with_sampling_learns_a_rewarded_decision():
    """End to end with sampling: reward 1 when the first decision picks its initially less likely candidate."""
    controller = _sharp_controller(scale=1.0)
    learner = Reinforce(controller, lr=1e-2, entropy_weight=0.0, baseline_decay=0.9)
    generator = torch.Generator().manual_seed(11)
    first = controller.sample(_flops_left, generator, greedy=True).probs[0]
    target = int(first[:CANDIDATES[0]].argmin())
    start = float(first[target])
    for _ in range(60):
        sample = controller.sample(_flops_left, generator)
        learner.update(sample, 1.0 if sample.arch[0] == target else 0.0)
    end = float(controller.sample(_flops_left, generator, greedy=True).probs[0][target])
    assert end > max(start + 0.3, 0.8)


def test_reinforce_state_dict_round_trip():
    controller = _sharp_controller(scale=1.0)
    learner = Reinforce(controller, lr=1e-3, entropy_weight=1e-3, baseline_decay=0.9)
    generator = torch.Generator().manual_seed(0)
    for value in (0.1, 0.9, 0.3):
        learner.update(controller.sample(_flops_left, generator), value)
    state = learner.state_dict()
    other = Reinforce(_sharp_controller(scale=1.0), lr=1e-3, entropy_weight=1e-3, baseline_decay=0.9)
    other.load_state_dict(state)
    assert other.baseline == learner.baseline


# --- the lean search step (issue 14): batched draws, teacher forcing, foreach Adam --------------------------------
def _reference_sample(controller: Controller, flops_left, generator, arch_only: bool) -> Sample:
    """Controller.sample as it was before issue 14: one LSTMCell step and one torch.multinomial per decision."""
    state, previous, arch = controller._initial_state(), controller.start_token, []
    log_prob, entropy, probs = 0.0, 0.0, []
    for index in range(controller.num_decisions):
        logits, state = controller.step(state, previous, index, flops_left(arch))
        distribution = torch.softmax(logits, dim=-1)
        action = int(torch.multinomial(distribution.detach(), 1, generator=generator))
        arch.append(action)
        previous = action
        if arch_only:
            continue
        log_dist = torch.log_softmax(logits, dim=-1)
        log_prob = log_prob + log_dist[action]
        entropy = entropy - (distribution * log_dist.masked_fill(distribution == 0, 0.0)).sum()
        probs.append(distribution.detach())
    return Sample(tuple(arch), log_prob, entropy, probs)


def _reward_of(arch) -> float:
    """A deterministic reward that prefers the last candidates (so the policy moves and the draws depend on it)."""
    return sum(arch) / (3.0 * len(arch))


@pytest.mark.parametrize("num_candidates", [(4,) * 19, CANDIDATES], ids=["paper", "unequal"])
def test_the_lean_step_draws_as_before_over_100_steps(num_candidates):
    """Same architectures, and parameters within 1e-6 (seen: 3e-8), at the search's controller settings. The
    fused LSTM rounds differently from the two LSTMCells (≈1e-7); Adam normalises every gradient component, so
    at a much larger rate (1e-2) near-zero components make that 5e-4 after 100 steps. Foreach Adam itself is
    bitwise the per-parameter loop."""
    old, new = Controller(num_candidates, seed=3), Controller(num_candidates, seed=3)
    old_learner = Reinforce(old, lr=1.6e-4, entropy_weight=4e-3, baseline_decay=0.99)
    old_learner.optimizer = torch.optim.Adam(old.parameters(), lr=1.6e-4, betas=(0.5, 0.999), weight_decay=1e-3,
                                             foreach=False)  # the per-parameter loop it used to run
    new_learner = Reinforce(new, lr=1.6e-4, entropy_weight=4e-3, baseline_decay=0.99)
    old_generator, new_generator = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)

    def left(prefix) -> float:
        return 1.0 - 0.02 * sum(prefix)

    for _ in range(100):
        with torch.no_grad():
            old_first = _reference_sample(old, left, old_generator, arch_only=True)
        old_sample = _reference_sample(old, left, old_generator, arch_only=False)
        new_first, new_sample = new.sample_many(left, new_generator, (True, False))
        assert (new_first.arch, new_sample.arch) == (old_first.arch, old_sample.arch)
        assert float(new_sample.log_prob.detach()) == pytest.approx(float(old_sample.log_prob.detach()), abs=1e-5)
        assert float(new_sample.entropy.detach()) == pytest.approx(float(old_sample.entropy.detach()), abs=1e-5)
        for mine, theirs in zip(new_sample.probs, old_sample.probs):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
        old_learner.update(old_sample, _reward_of(old_sample.arch))
        new_learner.update(new_sample, _reward_of(new_sample.arch))
    assert torch.equal(old_generator.get_state(), new_generator.get_state())
    for (name, mine), theirs in zip(new.named_parameters(), old.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(new.parameters(), Controller(num_candidates, seed=3).parameters()))


def test_sample_many_draws_as_that_many_samples_in_a_row():
    controller = _sharp_controller(scale=1.0)
    first, second = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    expected = [controller.sample(_flops_left, first, arch_only=only).arch for only in (False, True, False)]
    got = controller.sample_many(_flops_left, second, (False, True, False))
    assert [sample.arch for sample in got] == expected
    assert torch.isnan(got[1].log_prob) and got[1].probs == [] and len(got[2].probs) == len(CANDIDATES)
    greedy = controller.sample_many(_flops_left, None, (True, True), greedy=True)
    assert greedy[0].arch == greedy[1].arch == controller.sample(_flops_left, greedy=True).arch


def test_a_nan_policy_is_refused():
    controller = _sharp_controller()
    with torch.no_grad():
        controller.head.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="nan"):
        controller.sample(_flops_left, torch.Generator().manual_seed(0))
