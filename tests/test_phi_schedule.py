"""The Φ schedule (sharing_lab.aps.phi_schedule): per-layer bounds, tracking its targets (every layer, the stem and the
classifier included), the data-free replay that equals a search's Φ, τ calibration by replay, and the
``sharing-lab budget`` command."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_search_cli import TINY, assert_input_error, invoke

import sharing_lab.search.replay as replay_module
from sharing_lab import read_table
from sharing_lab.aps.phi_schedule import MAX_MOVE, PhiSchedule, layer_bounds, log_progress, progress, side_floor
from sharing_lab.aps.schemes import get_scheme
from sharing_lab.aps.sharing import phi, side_level
from sharing_lab.aps.transition import at_rate
from sharing_lab.config import Config, apply_overrides
from sharing_lab.jobs.job import run_search
from sharing_lab.search.replay import budget, calibrate_tau, replay
from sharing_lab.search.supernet import Supernet
from sharing_lab.space.search_space import build_space

SHAPE = (10, 1, 8)  # the embedded default's data: digits, 10 classes, 1 channel, 8×8


def _supernet(*overrides: str, seed: int = 0) -> Supernet:
    config = apply_overrides(Config(), list(overrides))
    return Supernet(build_space(config, *SHAPE), seed)


@pytest.mark.parametrize("widths, meta", [((1, 2, 3, 4), 10), ((2, 4), 6), ((16, 32, 64, 96), 208)])
def test_the_side_floor_is_independent_sharing_when_the_meta_width_holds_every_candidate(widths, meta):
    independent = get_scheme("independent").make(widths, meta)
    assert side_floor(widths, meta) == pytest.approx(float(side_level(independent.matrices)))


def test_the_side_floor_is_a_lower_bound_when_the_candidates_do_not_fit():
    generator = torch.Generator().manual_seed(0)
    widths, meta = (2, 3, 4), 4  # 9 columns in 4 dimensions: no orthogonal placement
    for _ in range(50):
        matrices = [torch.nn.functional.normalize(torch.randn(meta, c, generator=generator), dim=0) for c in widths]
        assert float(side_level(matrices)) >= side_floor(widths, meta) - 1e-5


def test_layer_bounds_are_the_ordinal_and_independent_levels_of_every_movable_layer():
    start, floor = layer_bounds(_supernet())
    ordinal, independent = _supernet("sharing.scheme=ordinal"), _supernet("sharing.scheme=independent")
    assert len(start) == len(_supernet().movable_layers()) == len(ordinal.phi_per_layer())
    torch.testing.assert_close(start, torch.tensor(ordinal.phi_per_layer(), dtype=torch.float64))
    torch.testing.assert_close(floor, torch.tensor(independent.phi_per_layer(), dtype=torch.float64))
    assert (floor < start).all()


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_the_target_trajectory_starts_at_ordinal_reaches_its_fraction_at_its_point_and_holds(shape):
    assert progress(shape, 0.8, 0.6, 0.0) == 0.0
    assert progress(shape, 0.8, 0.6, 0.6) == pytest.approx(0.8)
    assert progress(shape, 0.8, 0.6, 1.0) == pytest.approx(0.8)
    assert progress(shape, 0.8, 0.6, 0.3) == pytest.approx(0.4)  # linear and cosine agree at the middle
    values = [progress(shape, 0.8, 0.6, s / 100) for s in range(101)]
    assert values == sorted(values)


def test_tracking_brings_every_layer_to_its_target_the_stem_and_classifier_too():
    supernet = _supernet()
    schedule = PhiSchedule(supernet, "linear", 0.8, 0.5)
    steps = 400
    for step in range(steps):
        layer_phi, tau = supernet.track_phi(schedule.targets((step + 1) / steps), MAX_MOVE)
        assert (tau >= 0).all()
    final = torch.tensor([phi(*([t.contiguous() for t in side] for side in module.sides()))
                          for module in supernet.movable_layers()], dtype=torch.float64)
    reached = [log_progress(float(v), float(s), float(f)) for v, s, f in zip(final, schedule.start, schedule.floor)]
    assert reached == pytest.approx([0.8] * len(reached), abs=0.02)  # per layer, not only on the sum
    for module in supernet.movable_layers():  # columns stay unit vectors (Π_U)
        for side in module.sides():
            for matrix in side or ():
                torch.testing.assert_close(matrix.norm(dim=0), torch.ones(matrix.shape[1]))


def test_a_layer_at_or_below_its_target_does_not_move():
    supernet = _supernet()
    schedule = PhiSchedule(supernet, "cosine", 0.8, 0.6)
    before = [t.clone() for module in supernet.movable_layers() for side in module.sides() for t in side or ()]
    _, tau = supernet.track_phi(schedule.targets(0.0) * 2, MAX_MOVE)  # targets above the current Φ
    assert (tau == 0).all()
    after = [t for module in supernet.movable_layers() for side in module.sides() for t in side or ()]
    for a, b in zip(before, after):  # Π_U of an unmoved unit column: the same up to rounding
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


SEARCH = [*TINY, "search.epochs=3", "search.warmup_epochs=1", "search.eval_every=3", "probes.enabled=false"]


def test_the_replay_without_data_is_the_searchs_phi(tmp_path):
    """P/Q get no task gradient: replaying the schedule's moves alone gives the recorded Φ of every epoch."""
    run_dir = run_search(None, out=tmp_path, name="s", overrides=SEARCH, log=lambda message: None)
    scalars = read_table(run_dir, "scalars")
    recorded = scalars[scalars["name"] == "phi"].sort_values("step")["value"].to_numpy()
    config = apply_overrides(Config(), SEARCH)
    steps = int(scalars.loc[scalars["name"] == "steps_per_epoch", "value"].iloc[0])
    space = build_space(config, 10, 3, 8)
    trajectory = replay(config, space, steps)
    assert list(trajectory.rows["epoch"]) == [1, 2]
    assert trajectory.rows["phi"].to_numpy() == pytest.approx(recorded[1:], rel=1e-6)
    taus = scalars[scalars["name"] == "tau"]
    assert len(taus) == 2 and (taus["value"] > 0).all()  # the realised step sizes are recorded
    assert set(scalars["name"]) >= {"phi_target"}
    ended = json.loads((run_dir / "summary.json").read_text())["budget"]  # the ratios and Φ's end, per run
    assert ended["phi_end"] == pytest.approx(trajectory.rows["phi"].iloc[-1], rel=1e-6)
    assert ended["progress_end"] == pytest.approx(trajectory.rows["progress"].iloc[-1], rel=1e-5)
    assert ended["warmup_share"] == pytest.approx(1 / 3) and "paper" in ended


def test_calibrate_tau_finds_the_constant_rate_that_reaches_the_fraction():
    config = apply_overrides(Config(), ["sharing.transition=1e-4", "search.epochs=12", "search.warmup_epochs=2"])
    space = build_space(config, *SHAPE)
    tau, trajectory = calibrate_tau(config, space, 20, fraction=0.5, at=0.5, iterations=16)
    assert 0 < tau < 1
    assert trajectory.progress_at(0.5) == pytest.approx(0.5, abs=0.06)
    slower = replay(at_rate(config, tau / 3), space, 20)
    assert slower.progress_at(0.5) < trajectory.progress_at(0.5)


def test_calibration_reads_a_diverging_phi_as_too_large_a_rate(monkeypatch):
    """Above some τ the steps overshoot and Φ grows without bound (progress < 0, or not finite): the bisection
    must go below such a rate, not above it (it did, and returned τ = 1 on the Fashion-MNIST space)."""
    def progress(tau: float) -> float:
        return min(tau / 1e-5, 1.0) if tau < 1e-3 else (-5.0 if tau < 1e-1 else float("nan"))

    def fake(config, *args, **kwargs):
        return SimpleNamespace(rows=pd.DataFrame({"progress": [progress(config.sharing.transition)]}))

    monkeypatch.setattr(replay_module, "replay", fake)
    config = apply_overrides(Config(), ["sharing.transition=1e-4"])
    tau, _ = calibrate_tau(config, build_space(config, *SHAPE), 20)
    assert tau == 8e-6


def test_calibration_stops_once_the_two_printed_digits_are_settled(monkeypatch):
    """The bisection ends when both ends of the bracket round to τ's two digits: fewer replays than the
    iterations allow, and the same τ a full bisection gives."""
    config = apply_overrides(Config(), ["sharing.transition=1e-4", "search.epochs=12", "search.warmup_epochs=2"])
    space = build_space(config, *SHAPE)
    calls = []
    real = replay_module.replay
    monkeypatch.setattr(replay_module, "replay", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    tau, _ = calibrate_tau(config, space, 20, fraction=0.5, at=0.5, iterations=30)
    early = len(calls)
    monkeypatch.setattr(replay_module, "_two_digits", lambda value: value)  # never settled: all 30 iterations
    calls.clear()
    full, _ = calibrate_tau(config, space, 20, fraction=0.5, at=0.5, iterations=30)
    assert early < 20 and len(calls) == 31
    assert tau == float(f"{full:.2g}")


def test_budget_states_the_ratios_beside_the_papers():
    config = Config()
    space = build_space(config, *SHAPE)
    result = budget(config, space, 33, replay(config, space, 33))
    assert result["warmup_share"] == pytest.approx(1 / 3) == pytest.approx(result["paper"]["warmup_share"])
    assert result["controller_updates_per_decision"] == 30 * 33 / 3
    assert result["phi_80_at"] == pytest.approx(0.6, abs=1 / 30)
    assert result["lr_factor_at_phi_80"] == 1.0  # Φ gets there while the weight lr is still at its peak
    assert result["progress_end"] == pytest.approx(0.8, abs=0.01)
    assert result["transition_at_peak_lr"] == pytest.approx(0.6)


def test_budget_cli_json_and_bad_input():
    result = invoke("budget", "--json", "--set", "search.epochs=6", "--set", "search.warmup_epochs=2",
                    "--set", "search.lr_milestones=[4,5]")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["warmup_share"] == pytest.approx(1 / 3) and payload["calibrated_tau"] is None
    frame = pd.DataFrame(payload["phi"])
    assert list(frame["epoch"]) == [2, 3, 4, 5]
    assert math.isclose(frame["progress"].iloc[-1], 0.8, abs_tol=0.01)
    assert_input_error(invoke("budget", "--shape", "10,3"), "--shape")
    assert_input_error(invoke("budget", "--set", "sharing.transition=sideways"), "sharing.transition")
    assert_input_error(invoke("budget", "--set", "sharing.phi_at=0"), "sharing.phi_at")


def test_the_paper_preset_has_the_papers_proportions():
    result = invoke("budget", "--config", "cifar10-resnet20", "--no-replay", "--steps-per-epoch", "98",
                    "--shape", "10,3,32", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    paper = payload["paper"]
    for key in ("warmup_share", "controller_updates_per_decision", "transition_at_peak_lr",
                "transition_above_tenth_lr"):
        assert payload[key] == pytest.approx(paper[key]), key
    assert payload["phi_80_at"] == 0.6 and payload["lr_factor_at_phi_80"] == pytest.approx(0.1)
