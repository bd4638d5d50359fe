"""The figure modules (DESIGN §6) on small record tables written here: no search is run."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from sharing_lab import plots
from sharing_lab.aps.theorem import covariance_checks, extreme_checks
from sharing_lab.config import Config, apply_overrides
from sharing_lab.errors import InputError
from sharing_lab.plots import FIGURES, MissingRuns, RunSet, common, find_run_dirs, plot, plot_all, style
from sharing_lab.plots import rank as rank_module
from sharing_lab.plots import theorem as theorem_module
from sharing_lab.plots.runs import SCHEDULED, scheme_arms
from sharing_lab.runs.records import RecordWriter
from sharing_lab.runs.rundir import write_config

EPOCHS, WARMUP, STEPS, EVAL_EVERY, PROBE_EVERY = 12, 4, 10, 4, 2
WIDTHS = (4, 8, 12, 16)
LAYERS = 3
PHI0 = {"ordinal": 1.3e5, "independent": 1.6e3, "transitionary": 1.3e5, "overlap:0.5": 2.0e4}


def fake_run(root, dirname, scheme="ordinal", seed=0, tau=1e-5, target=None, retrain=5, probes=True,
             extra=None, steps_per_epoch=STEPS):
    """A finished-looking run: per-epoch scalars (``steps_per_epoch`` recorded as the search does; None: left
    out) and probs, probes every other epoch (one NaN), evaluations, beam rows in ``archs`` and retrained
    architectures in ``retrain`` / ``retrain_curves``. Returns the run directory."""
    run_dir = root / dirname
    run_dir.mkdir(parents=True)
    overrides = [f"sharing.scheme={scheme}", f"seed={seed}", f"search.epochs={EPOCHS}",
                 f"search.warmup_epochs={WARMUP}", f"search.eval_every={EVAL_EVERY}",
                 f"sharing.transition={tau}" if tau is not None else "sharing.transition=cosine"]
    if target is not None:
        overrides.append(f"search.flops_target={target}")
    config = apply_overrides(Config(), overrides)
    write_config(run_dir, config, extra or {})
    tau = tau if tau is not None else 1e-5  # a Φ-scheduled run's records: shaped as at the default rate
    rng = np.random.default_rng(seed + 17 * len(scheme))
    writer = RecordWriter(run_dir, run_dir.name)
    decay = {"transitionary": 0.05 * math.log10(tau * 1e6)}.get(scheme.split(":")[0], 0.0)
    scale = {"ordinal": 1.0, "independent": 0.6, "transitionary": 0.95}.get(scheme.split(":")[0], 0.8)
    for epoch in range(EPOCHS):
        step = (epoch + 1) * STEPS
        progress = epoch / (EPOCHS - 1)
        phi = PHI0.get(scheme, 1e4) * math.exp(-decay * max(0, epoch - WARMUP + 1))
        values = {"train_acc": scale * (0.3 + 0.6 * progress) + 0.02 * rng.standard_normal(),
                  "train_loss": 2.0 - 1.5 * progress, "phi": phi, "lr": 0.1, "macs_sampled": 5e5}
        if steps_per_epoch is not None:
            values["steps_per_epoch"] = steps_per_epoch
        if epoch >= WARMUP:
            values.update(reward=0.5, baseline=0.4, entropy=4.0)
        if (epoch + 1) % EVAL_EVERY == 0:
            mean = scale * (0.25 + 0.6 * progress) + 0.02 * rng.standard_normal()
            values.update(val_acc_mean=mean, val_acc_max=min(mean + 0.1, 1.0), val_acc_widest=mean + 0.05)
        writer.add("scalars", [{"step": step, "epoch": epoch, "name": k, "value": float(v)} for k, v in values.items()])
        if probes and (epoch + 1) % PROBE_EVERY == 0:
            sharing = math.log10(phi) / 5.2
            cos = np.nan if epoch == 1 else 0.5 * sharing * scale + 0.02 * rng.standard_normal()
            coupled = 0.0 if scheme == "independent" else 0.1 * sharing + 0.005 * rng.random()
            writer.add("scalars", [{"step": step, "epoch": epoch, "name": n, "value": float(v)}
                                   for n, v in (("cos_align", cos), ("coupled_norm", coupled), ("phi_code", phi))])
            writer.add("layers", [{"step": step, "epoch": epoch, "layer": layer, "phi": phi / LAYERS,
                                   "phi_code": phi, "cos_align": cos, "coupled_norm": coupled, "name": f"l{layer}"}
                                  for layer in range(LAYERS)])
            writer.add("pairs", [{"step": step, "epoch": epoch, "layer": -1, "a": 0, "b": 1, "phi_pair": phi,
                                  "cos": cos}])
        sharpness = 0.0 if epoch < WARMUP else (epoch - WARMUP) * (1.0 if scheme == "transitionary" else 0.3)
        for layer in range(LAYERS):
            logits = sharpness * np.linspace(-0.3, 0.3, len(WIDTHS)) * (layer + 1) + 0.05 * rng.standard_normal(4)
            probs = np.exp(logits) / np.exp(logits).sum()
            writer.add("probs", [{"step": step, "epoch": epoch, "layer": layer, "choice": c, "width": w,
                                  "prob": float(probs[c])} for c, w in enumerate(WIDTHS)])
        if (epoch + 1) % EVAL_EVERY == 0:
            writer.flush()
    beams, retrains, curves = [], [], []
    for rank in range(8):
        widths = f"{WIDTHS[rank % 4]},{WIDTHS[rank // 4]},16"  # eight distinct architectures
        supernet_acc = scale * 0.9 - 0.02 * rank + 0.005 * rng.standard_normal()
        beams.append({"epoch": EPOCHS - 1, "source": "beam", "widths": widths, "macs": 500_000 + rank,
                      "log_prob": -1.0 - rank, "acc": supernet_acc, "rank": rank, "test_acc": supernet_acc - 0.01})
        if rank < retrain:
            stand_alone = 0.9 - 0.01 * rank * (2 - scale) + 0.003 * rng.standard_normal()
            retrains.append({"epoch": 40, "widths": widths, "macs": 500_000 + rank, "params": 10_000,
                             "log_prob": -1.0 - rank, "rank": rank, "val_acc": stand_alone + 0.01,
                             "test_acc": stand_alone, "seed": seed})
            curves += [{"step": (e + 1) * 7, "epoch": e, "widths": widths, "name": name, "value": value}
                       for e in range(3) for name, value in (("train_loss", 1.0 - 0.1 * e), ("val_acc", 0.5))]
    writer.add("archs", beams)
    writer.flush()
    if retrains:
        writer.add("retrain_curves", curves)
        writer.add("retrain", retrains)
        writer.flush()
    return run_dir


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """O, I, T (two seeds each) without a FLOPs target and O, I, T with one, three τ, one overlap run and a
    retrain-only directory. Directory names deliberately lie about the configuration."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        for scheme in ("ordinal", "independent", "transitionary"):
            fake_run(root / "free", f"x-{scheme[::-1]}-{seed}", scheme, seed=seed, tau=1e-4)
    for scheme in ("ordinal", "independent", "transitionary"):
        fake_run(root / "target", f"ordinal-{scheme}", scheme, seed=5, tau=1e-4, target=3e5)
    for tau in (1e-3, 1e-5):
        fake_run(root / "tau", f"tau-{tau}", "transitionary", seed=2, tau=tau, retrain=0)
    fake_run(root / "sweep" / "deeper", "independent", "overlap:0.5", seed=0, retrain=0)
    fake_run(root, "retrain-only", "transitionary", retrain=3, extra={"source": "arch.json"})
    return root


@pytest.fixture(scope="module")
def runset(full):
    return RunSet.from_paths([full])


@pytest.fixture(scope="module")
def checks():
    """What ``run_checks`` returns, computed with few samples and draws (the real call takes seconds)."""
    found = covariance_checks(samples=400) + extreme_checks(draws=20)
    return {"passed": all(c.passed for c in found), "worst_relative_error": 0.05, "checks": [asdict(c) for c in found]}


def _panels(fig: Figure) -> list:
    """Axes that are panels (twin axes share a panel's position and are left out)."""
    panels = []
    for ax in fig.axes:
        if not any(ax.get_position().bounds == other.get_position().bounds for other in panels):
            panels.append(ax)
    return panels


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_runs_are_found_nested_and_told_apart_by_configuration(full, runset):
    assert len(find_run_dirs([full])) == 13
    meta = runset.meta.set_index("run")
    assert meta.loc["x-lanidro-0", "scheme"] == "ordinal"  # from config.json, not from the directory name
    assert meta.loc["ordinal-independent", "scheme"] == "independent"
    assert meta.loc["ordinal-independent", "flops_target"] == 3e5
    assert math.isnan(meta.loc["x-lanidro-1", "flops_target"])
    assert meta.loc["independent", "scheme"] == "overlap:0.5" and meta.loc["independent", "alpha"] == 0.5
    assert meta.loc["retrain-only", "kind"] == "retrain"
    assert list(runset.select(kind="search").by_tau()) == [1e-5, 1e-4, 1e-3]
    assert {k: len(v) for k, v in runset.by_flops_target().items()} == {None: 10, 3e5: 3}
    assert set(runset.table("scalars")["scheme"]) == {"ordinal", "independent", "transitionary", "overlap:0.5"}


def test_discovery_stops_at_depth_three_and_refuses_missing_paths(tmp_path):
    fake_run(tmp_path / "a" / "b", "shallow", retrain=0)
    fake_run(tmp_path / "a" / "b" / "c", "deep", retrain=0)
    assert [p.name for p in find_run_dirs([tmp_path])] == ["shallow"]
    with pytest.raises(InputError, match="does not exist"):
        RunSet.from_paths([tmp_path / "nope"])


def test_fig3_one_point_per_probe_step_coloured_by_scheme(runset):
    fig = FIGURES["fig3"](runset)
    assert len(fig.axes) == 2
    left, right = fig.axes
    assert left.get_xscale() == "log" and "Φ" in left.get_xlabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend for both panels
    assert legend == ["APS-I (independent)", "overlap α=0.5", "APS-O (ordinal)", "APS-T (transitionary)"]
    assert style.ordered(["transitionary", "mine", "overlap:0.75", "ordinal", "independent", "overlap:0.25"]) == [
        "independent", "overlap:0.25", "overlap:0.75", "ordinal", "transitionary", "mine"]  # every figure's order
    sizes = {c.get_label(): len(c.get_offsets()) for c in left.collections}
    # ordinal: 2 unconstrained seeds + 1 constrained run, 6 probe steps each, the NaN one (epoch 1) dropped
    assert sizes["APS-O (ordinal)"] == 3 * 5
    assert sizes["overlap α=0.5"] == 5
    assert {c.get_label(): len(c.get_offsets()) for c in right.collections}["APS-O (ordinal)"] == 3 * 6


def test_fig4_accuracy_panels_and_alignment_trend(runset):
    fig = FIGURES["fig4"](runset)
    panels = _panels(fig)
    assert len(panels) == 4 and len(fig.axes) == 5  # one twin axis for Φ
    for ax, name in zip(panels[:3], ("APS-I", "APS-O", "APS-T")):  # style.scheme_order
        assert ax.get_title().startswith(name) and "2 seeds" in ax.get_title()
        assert _labels(ax) == ["training", "val mean (sampled)", "val max (sampled)", "warm-up end"]
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3  # one 95% band per curve
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy (%)"
        assert ax.get_lines()[-1].get_xdata()[0] == WARMUP
        train = ax.get_lines()[0]
        assert len(train.get_xdata()) == EPOCHS and max(train.get_ydata()) > 1.5  # percent, not fraction
    trend = panels[3]
    assert _labels(trend) == ["APS-I", "APS-O", "APS-T", "warm-up end"]
    twin = next(ax for ax in fig.axes if ax not in panels)
    assert twin.get_yscale() == "log" and _labels(twin) == ["Φ of APS-T (right)"]
    legend = [t.get_text() for t in trend.get_legend().get_texts()]
    assert "Φ of APS-T (right)" in legend


def test_fig5_probability_panels_and_coupled_trend(runset):
    fig = FIGURES["fig5"](runset)
    panels = _panels(fig)
    assert len(panels) == 4
    for ax in panels[:3]:
        assert _labels(ax) == [f"width {w}" for w in WIDTHS]
        assert ax.get_ylabel() == "decision probability"
        for line in ax.get_lines():
            assert list(line.get_xdata()) == list(range(LAYERS))
        assert "epochs 10–12" in ax.get_title()  # last quarter of 12 epochs
    t_lines = panels[2].get_lines()
    assert t_lines[-1].get_ydata()[-1] > t_lines[0].get_ydata()[-1]  # T's controller prefers the widest
    assert [ax.get_title().split()[0] for ax in panels[:3]] == ["APS-I", "APS-O", "APS-T"]
    assert _labels(panels[3]) == ["APS-I", "APS-O", "APS-T", "warm-up end"]
    independent = panels[3].get_lines()[0].get_ydata()
    assert np.allclose(independent, 0.0)


def test_fig6_and_fig7_one_panel_per_tau(runset):
    for name, first_label in (("fig6", "training"), ("fig7", "width 4")):
        fig = FIGURES[name](runset)
        panels = _panels(fig)
        assert len(panels) == 3
        assert [ax.get_title().split(" (")[0] for ax in panels] == ["APS-T τ=0.001", "APS-T τ=0.0001",
                                                                   "APS-T τ=1e-05"]
        assert all(_labels(ax)[0] == first_label for ax in panels)


def test_fig8_top_n_without_and_with_target(runset):
    fig = FIGURES["fig8"](runset)
    assert len(fig.axes) == 2
    free, constrained = fig.axes
    assert "no FLOPs target" in free.get_title() and "0.3M MACs" in constrained.get_title()
    assert _legend(free) == ["APS-I (2 seeds)", "APS-O (2 seeds)", "APS-T (2 seeds)"]
    assert _legend(constrained) == ["APS-I", "APS-O", "APS-T"]
    assert np.allclose(free.containers[1].lines[0].get_xdata(), [1, 2, 3, 4, 5])  # the middle one is not dodged
    assert free.get_ylabel().startswith("test accuracy (%)")
    assert sum(isinstance(c, LineCollection) for c in free.collections) == 3  # ± std bars per scheme


def test_top_n_statistics():
    from sharing_lab.plots.fig8 import top_n

    rows = __import__("pandas").DataFrame({"order": [2, 0, 1], "test_acc": [0.7, 0.9, 0.8]})
    curve = top_n(rows, "test_acc")
    assert curve["n"].tolist() == [1, 2, 3]
    assert np.allclose(curve["mean"], [0.9, 0.85, 0.8]) and np.allclose(curve["std"], [0.0, 0.05, np.std([.7, .8,
                                                                                                          .9])])


def test_rank_panels_per_scheme_with_correlations(runset):
    fig = FIGURES["rank"](runset)
    assert [ax.get_title() for ax in fig.axes] == ["APS-I (independent)", "APS-O (ordinal)",
                                                   "APS-T (transitionary)"]
    for ax in fig.axes:
        text = ax.texts[0].get_text()
        assert "n = 15 (3 runs)" in text and "Kendall τ-b" in text and "Spearman ρ" in text
        assert len(ax.collections[0].get_offsets()) == 15


def test_retrained_rows_come_from_the_retrain_table_with_the_beam_view(runset):
    rows = common.retrained(runset.select(kind="search"))
    assert len(rows) == 9 * 5 and set(rows["order"]) == set(range(5))  # nine search runs, five retrained each
    first = rows[rows["order"] == 0]
    assert (first["rank"] == 0).all() and first["beam_acc"].notna().all() and (first["beam_rank"] == 0).all()
    assert common.accuracy_column(rows) == ("test_acc", "test accuracy (%)")
    assert common.accuracy_column(rows.assign(test_acc=np.nan)) == ("val_acc", "validation accuracy (%)")
    assert set(runset.table("archs")["source"]) == {"beam"} and "arch" not in runset.table("scalars")


def test_retrained_order_falls_back_to_the_rows_own_rank_then_likelihood(tmp_path):
    run_dir = fake_run(tmp_path, "alone", "ordinal", retrain=0)
    writer = RecordWriter(run_dir, "alone")
    writer.add("retrain", [{"epoch": 3, "widths": w, "macs": 1, "params": 1, "log_prob": lp, "rank": rank,
                            "val_acc": 0.5, "test_acc": float("nan"), "seed": 0}
                           for w, rank, lp in (("1,1,1", 2, -3.0), ("2,2,2", 1, -1.0), ("4,4,16", 5, -9.0),
                                               ("8,8,8", 1, -0.5))])
    writer.flush()
    rows = common.retrained(RunSet.from_paths([run_dir]))  # "4,4,16" is beam rank 0; ties: likeliest first
    assert rows.sort_values("order")["widths"].tolist() == ["4,4,16", "8,8,8", "2,2,2", "1,1,1"]
    empty = common.retrained(RunSet.from_paths([fake_run(tmp_path, "none", retrain=0)]))
    assert empty.empty and {"val_acc", "test_acc", "order", "beam_acc"} <= set(empty.columns)


def test_steps_per_epoch_is_the_recorded_scalar_and_required(tmp_path):
    runs = RunSet.from_paths([fake_run(tmp_path, "double", "ordinal", retrain=0, steps_per_epoch=2 * STEPS)])
    assert runs.run(0).steps_per_epoch() == 2 * STEPS
    train = common.scalars(runs, ["train_acc"]).sort_values("step")
    assert np.allclose(train["x"], (np.arange(EPOCHS) + 1) / 2)  # step / recorded value, not epoch + 1
    for tau in (1e-3, 1e-5):
        fake_run(tmp_path / "old", f"old-{tau}", "transitionary", tau=tau, retrain=0, steps_per_epoch=None)
    old = RunSet.from_paths([tmp_path / "old"])
    with pytest.raises(MissingRuns, match=r"run 'old-0.001' .*steps_per_epoch"):
        old.run(0).steps_per_epoch()
    with pytest.raises(MissingRuns, match="steps_per_epoch"):
        FIGURES["fig6"](old)


def test_correlations_with_bootstrap_interval():
    x = np.arange(10, dtype=float)
    result = rank_module.correlations(x, x ** 2, resamples=200)
    assert result["kendall"][0] == pytest.approx(1.0) and result["spearman"][0] == pytest.approx(1.0)
    shuffled = rank_module.correlations(x, np.array([3, 9, 1, 7, 0, 5, 8, 2, 6, 4.0]), resamples=200)
    value, lo, hi = shuffled["kendall"]
    assert lo <= value <= hi and value < 0.5


def test_batched_rank_statistics_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, (4, 12)).astype(float), rng.normal(size=(4, 12))  # ties in x
    for row in range(4):
        assert rank_module.kendall_b(x, y)[row] == pytest.approx(stats.kendalltau(x[row], y[row]).statistic)
        assert rank_module.spearman(x, y)[row] == pytest.approx(stats.spearmanr(x[row], y[row]).statistic)


def test_theorem_figure(checks, monkeypatch):
    monkeypatch.setattr(theorem_module, "run_checks", lambda samples, seed: checks)
    fig = theorem_module.figure(None, samples=2000, draws=20)
    left, right = fig.axes
    assert sum(len(c.get_offsets()) for c in left.collections) == 6  # the six covariance checks
    assert "y = x" in _labels(left)
    assert sum(p.get_height() for p in right.patches) == 20  # every random Φ lies between the bounds
    labels = _labels(right)
    assert any("ordinal = max (1600)" in label for label in labels)
    assert any("independent = min (400)" in label for label in labels)
    assert len(right.collections[0].get_offsets()) == 5  # overlap α = 0 … 1


def test_random_transforms_are_semi_orthogonal_and_between_the_bounds():
    import torch

    side = theorem_module.random_transforms((2, 3), 6, torch.Generator().manual_seed(1))
    assert [tuple(t.shape) for t in side] == [(6, 5, 2), (6, 5, 3)]
    for t in side:
        assert torch.allclose(t.transpose(1, 2) @ t, torch.eye(t.shape[2], dtype=t.dtype).expand(6, -1, -1))
    values = theorem_module.random_phis(widths=(2, 3), draws=5)
    ordinal, independent = theorem_module.scheme_phi("ordinal", (2, 3)), theorem_module.scheme_phi("independent",
                                                                                                   (2, 3))
    assert (ordinal, independent) == (pytest.approx(49.0), pytest.approx(25.0))  # (2+2+3)², (2+3)²
    assert values.shape == (5,) and np.all((values > independent) & (values < ordinal))


def test_plot_writes_png_and_pdf_from_paths(full, tmp_path):
    paths = plot("fig6", [full / "tau", full / "free"], tmp_path / "out")
    assert [p.name for p in paths] == ["fig6.png", "fig6.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 1000 for p in paths)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig6.pdf", "fig6.png"]  # no temporaries


def test_missing_runs_message_names_the_missing_schemes(full, tmp_path):
    with pytest.raises(MissingRuns, match="fig5 needs .*ordinal, independent, transitionary.*; found: "
                                          r"transitionary \(2 runs\) \(missing: ordinal, independent\)"):
        plot("fig5", [full / "tau"], tmp_path)
    assert not list(tmp_path.iterdir())


def test_plot_all_on_an_incomplete_set_names_what_is_missing(full, checks, monkeypatch, tmp_path):
    monkeypatch.setattr(theorem_module, "run_checks", lambda samples, seed: checks)
    monkeypatch.setattr(theorem_module, "random_phis", lambda draws, seed: np.linspace(500.0, 900.0, draws))
    monkeypatch.setitem(FIGURES, "theorem", functools.partial(theorem_module.figure, samples=2000, draws=20))
    drawn = []

    def fake_save(figure, out_dir, name):  # rendering files is covered above; here only what gets drawn
        assert isinstance(figure, Figure) and figure.axes
        drawn.append(name)
        return [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]

    monkeypatch.setattr(plots, "save", fake_save)
    written, skipped = plot_all([full / "tau"], tmp_path)
    assert drawn == ["fig3", "fig6", "fig7", "theorem"]
    assert sorted(p.name for p in written) == ["fig3.pdf", "fig3.png", "fig6.pdf", "fig6.png", "fig7.pdf",
                                               "fig7.png", "theorem.pdf", "theorem.png"]
    assert set(skipped) == {"fig4", "fig5", "fig8", "rank", "gt"}
    assert "ordinal, independent" in skipped["fig4"] and "retrain" in skipped["fig8"]
    assert "ground truth" in skipped["gt"]


def test_gt_figure_draws_ground_truth_scores_along_the_search(full, tmp_path):
    import shutil

    from sharing_lab.runs.records import RecordWriter

    shutil.copytree(full / "free", tmp_path / "free")
    for run_dir in sorted((tmp_path / "free").iterdir()):
        parts = [int(p.stem.split("-")[1]) for p in run_dir.glob("*/part-*.parquet")]
        writer = RecordWriter(run_dir, run_dir.name, next_part=max(parts) + 1)
        writer.add("scalars", [{"step": STEPS * (epoch + 1), "epoch": epoch, "name": name, "value": value}
                               for epoch in range(EPOCHS) for name, value in
                               (("gt_kendall", 0.1 * epoch / EPOCHS), ("gt_top1_prob", 1 / 64 + epoch / 500))])
        writer.flush()
    fig = FIGURES["gt"](RunSet.from_paths([tmp_path / "free"]))
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    schemes = [label for label in labels if label.startswith("APS-")]
    assert len(schemes) == 3 and all("2 seeds" in label for label in schemes) and "warm-up end" in labels


def test_fig8_measures_the_beam_against_the_ground_truth_when_the_space_has_one(full, tmp_path):
    import shutil

    from sharing_lab.runs.records import RecordWriter

    shutil.copytree(full / "free", tmp_path / "free")
    truth = {"ordinal": 0.95, "independent": 0.93, "transitionary": 0.97}
    for run_dir in sorted((tmp_path / "free").iterdir()):
        run = RunSet.from_paths([run_dir]).runs[0]
        parts = [int(p.stem.split("-")[1]) for p in run_dir.glob("*/part-*.parquet")]
        writer = RecordWriter(run_dir, run_dir.name, next_part=max(parts) + 1)
        writer.add("archs", [{"epoch": EPOCHS, "source": "beam", "widths": f"{rank + 1},4,16", "macs": 1000 + rank,
                              "log_prob": -1.0 - rank, "acc": 0.5, "rank": rank,
                              "gt_acc": truth[run.family] - 0.01 * rank, "gt_rank": rank + 1}
                             for rank in range(3)])
        writer.flush()
    fig = FIGURES["fig8"](RunSet.from_paths([tmp_path / "free"]))
    free = fig.axes[0]
    assert free.get_ylabel().startswith("ground-truth test accuracy (%)")
    means = {label.split(" ")[0]: container.lines[0].get_ydata()
             for label, container in zip(_legend(free), free.containers)}
    assert means["APS-T"][0] == pytest.approx(97.0) and means["APS-I"][-1] == pytest.approx(92.0)
    assert len(means["APS-O"]) == 3  # N = 1 … the beam's 3 scored rows, not the 5 retrained ones


def test_a_phi_scheduled_run_has_no_tau_and_is_left_out_of_the_tau_figures(tmp_path):
    for tau in (1e-3, 1e-5, None):
        fake_run(tmp_path, f"t-{tau}", "transitionary", tau=tau, retrain=0)
    runs = RunSet.from_paths([tmp_path])
    assert list(runs.by_tau()) == [1e-5, 1e-3]
    scheduled = runs.select(phi_schedule="cosine")
    assert len(scheduled) == 1 and math.isnan(scheduled.meta["tau"].iloc[0])
    fig = FIGURES["fig6"](runs)
    assert len(fig.axes) == 2
    fake_run(tmp_path, "o", "ordinal", retrain=0)
    arms = scheme_arms(RunSet.from_paths([tmp_path]), "gt")
    assert list(arms) == ["ordinal", "transitionary", SCHEDULED]
    assert [run.name for run in arms[SCHEDULED]] == ["t-None"] and len(arms["transitionary"]) == 1


def test_no_probe_records_is_reported(tmp_path):
    fake_run(tmp_path, "quiet", "ordinal", probes=False, retrain=0)
    with pytest.raises(MissingRuns, match="fig3 needs .*probe"):
        FIGURES["fig3"](RunSet.from_paths([tmp_path]))
    with pytest.raises(MissingRuns, match="at least two transition rates"):
        FIGURES["fig7"](RunSet.from_paths([tmp_path]))


def test_config_json_is_what_identifies_a_run(tmp_path):
    run_dir = fake_run(tmp_path, "somewhere", "independent", retrain=0)
    payload = json.loads((run_dir / "config.json").read_text())
    assert payload["config"]["sharing"]["scheme"] == "independent"
    assert RunSet.from_paths([run_dir]).meta.loc[0, "scheme"] == "independent"
