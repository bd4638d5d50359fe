"""``sharing-lab claims``: verdicts from records built to hold, to fail and to be inconclusive, the intervals
against their textbook definitions, and the CLI's output and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sharing_lab.analysis import claims as claims_module
from sharing_lab.cli import main
from sharing_lab.config import Config, apply_overrides
from sharing_lab.runs.records import RecordWriter
from sharing_lab.runs.rundir import write_config

EPOCHS, WARMUP, EVAL_EVERY, STEPS = 8, 4, 2, 10
SEEDS = 5
TAUS = (1e-6, 1e-5, 1e-4)  # the middle one is the transitionary arm of the scheme comparisons
SIGNS = {"holds": [1] * SEEDS, "fails": [-1] * SEEDS, "inconclusive": [1, -1, 1, -1, 0]}
JITTER = [-0.1, 0.05, 0.0, 0.1, -0.05]  # per seed: every arm has some spread, far smaller than the effect
EFFECT = 1.0


def fake_run(root, scheme: str, seed: int, sign: int, tau: float = TAUS[1], target: float | None = None,
             scheduled: bool = False) -> None:
    """A search run whose records carry each claim's effect with sign ``sign`` (+1: as the paper says);
    ``scheduled``: a transitionary run under the Φ schedule (else at the constant ``tau``)."""
    name = f"{scheme}-{'schedule' if scheduled else f'{tau:g}'}-{target}-{seed}"
    run_dir = root / name
    run_dir.mkdir(parents=True)
    overrides = [f"sharing.scheme={scheme}", f"seed={seed}", f"search.epochs={EPOCHS}",
                 f"search.warmup_epochs={WARMUP}", f"search.eval_every={EVAL_EVERY}"]
    if not scheduled:
        overrides.append(f"sharing.transition={tau}")
    if target is not None:
        overrides.append(f"search.flops_target={target}")
    write_config(run_dir, apply_overrides(Config(), overrides), {})
    writer = RecordWriter(run_dir, name)
    jitter, effect = JITTER[seed], sign * EFFECT
    t, o, i = scheme == "transitionary", scheme == "ordinal", scheme == "independent"
    high_tau, low_tau = t and tau == TAUS[2] and not scheduled, t and tau == TAUS[0] and not scheduled
    main_tau = t and tau == TAUS[1] and not scheduled
    rows = []
    for epoch in range(EPOCHS):
        step = (epoch + 1) * STEPS
        search = epoch >= WARMUP
        phi = 1e3 if i else 1e5 * (0.5 ** (epoch - WARMUP + 1) if t and search else 1.0)
        values = {"steps_per_epoch": STEPS, "phi": phi,
                  "train_acc": 0.5 + (0.0 if i else 0.05 * effect) + 0.01 * jitter}
        # alignment and coupling: higher for the shared schemes in warm-up (claims 2, 3); along T's search they
        # follow Φ with the sign (claim 4)
        level = (0.0 if i else effect) + 0.01 * jitter
        if t and search:
            level = effect * math.log10(phi) / 5 + 0.01 * jitter
        values.update(cos_align=0.5 + 0.1 * level, coupled_norm=1.0 + 0.1 * level, kernel_grad_norm=2.0)
        if search:
            entropy = 2.0 + 0.1 * jitter + (0.5 * effect if o or low_tau else 0.0)
            values["entropy"] = entropy
        if (epoch + 1) % EVAL_EVERY == 0:
            mean = 0.8
            if search and epoch == WARMUP + 1:
                mean -= 0.02 + (0.05 * effect if high_tau else 0.0) + 0.001 * jitter
            if epoch == EPOCHS - 1 and (main_tau or scheduled):  # claim 10a: accuracy lost by the end
                mean -= 0.05 + 0.001 * jitter - (0.02 * effect if scheduled else 0.0)
            values["val_acc_mean"] = mean
        rows += [{"step": step, "epoch": epoch, "name": k, "value": float(v)} for k, v in values.items()]
    wrong = (i and sign > 0) or (main_tau and sign < 0)  # claim 6: the exported architecture has regret
    best = 0.3 + (0.2 * effect if main_tau else 0.0) + 0.01 * jitter
    kendall = 0.6 + (0.2 * effect if main_tau else 0.4 * effect if scheduled else 0.0) + 0.01 * jitter
    final = EPOCHS * STEPS
    rows += [{"step": final, "epoch": EPOCHS - 1, "name": k, "value": float(v)}
             for k, v in (("gt_top1_prob", best), ("gt_kendall", kendall), ("gt_regret", 5.0 if wrong else 0.04))]
    writer.add("scalars", rows)
    gt_acc = 0.9 + (0.02 * effect if main_tau else 0.0) + 0.001 * jitter
    writer.add("archs", [{"epoch": EPOCHS - 1, "source": "beam", "widths": f"{r + 1},4", "macs": 1000 + r,
                          "log_prob": -1.0 - r, "acc": 0.8, "gt_acc": gt_acc - 0.001 * r} for r in range(3)])
    writer.flush()


def build(root, outcome: str) -> None:
    for seed, sign in enumerate(SIGNS[outcome]):
        for target in (None, 5e5):
            fake_run(root, "ordinal", seed, sign, target=target)
            fake_run(root, "independent", seed, sign, target=target)
            fake_run(root, "transitionary", seed, sign, target=target)
        fake_run(root, "transitionary", seed, sign, scheduled=True)
        fake_run(root, "transitionary", seed, sign, tau=TAUS[0])
        fake_run(root, "transitionary", seed, sign, tau=TAUS[2])


@pytest.fixture(scope="module", params=sorted(SIGNS))
def outcome_runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    build(root, request.param)
    return request.param, root


def test_every_claim_gets_the_verdict_its_records_were_built_for(outcome_runs):
    outcome, root = outcome_runs
    results = claims_module.claims_of([root])
    ids = [claim.id for claim in results]
    assert ids == ["1a", "1b", "2", "3a", "3b", "4a", "4b", "5a", "5b", "6", "7a", "7b", "8a", "8b", "8c", "8d",
                   "9a", "9b", "10a", "10b"]
    wrong = {claim.id: (claim.verdict, claim.value, claim.low, claim.high) for claim in results
             if claim.verdict != outcome}
    assert not wrong, wrong
    for claim in results:
        assert claim.n == SEEDS - (1 if outcome == "inconclusive" and claim.id in ("2", "3a", "3b", "4a", "4b")
                                   else 0), claim
        assert claim.low is not None and claim.low <= claim.value <= claim.high


def test_too_few_seeds_or_missing_runs_are_inconclusive_and_say_what_is_needed(tmp_path):
    for seed in range(2):
        fake_run(tmp_path, "ordinal", seed, 1)
        fake_run(tmp_path, "transitionary", seed, 1)
    results = {claim.id: claim for claim in claims_module.claims_of([tmp_path])}
    assert all(claim.verdict == "inconclusive" for claim in results.values())
    assert results["1a"].value is None and "runs of O, I and T" in results["1a"].needs  # no I runs
    assert results["5a"].n == 2 and results["5a"].value is not None and "≥ 5 seeds" in results["5a"].needs
    assert "three or more τ" in results["7a"].needs


def test_intervals_are_the_textbook_ones():
    a, b = [1.0, 2.0, 4.0, 3.5, 2.5], [0.5, 1.0, 0.0, 1.5]
    value, low, high = claims_module.difference_interval(a, b)
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    dof = se**4 / ((np.var(a, ddof=1) / len(a)) ** 2 / (len(a) - 1) + (np.var(b, ddof=1) / len(b)) ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * se
    assert value == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((value - half, value + half))
    mean, low, high = claims_module.mean_interval(a)
    half = stats.t.ppf(0.975, len(a) - 1) * np.std(a, ddof=1) / math.sqrt(len(a))
    assert (low, high) == pytest.approx((mean - half, mean + half))
    # Newcombe (1998), method 10, example (h): 5/56 - 0/29 -> [-0.0381, 0.1926]
    value, low, high = claims_module.proportion_difference(5, 56, 0, 29)
    assert (round(low, 4), round(high, 4)) == (-0.0381, 0.1926)
    assert claims_module.verdict(0.1, 0.5, 5) == "holds" and claims_module.verdict(-0.5, -0.1, 5) == "fails"
    assert claims_module.verdict(-0.1, 0.5, 5) == "inconclusive"
    assert claims_module.verdict(0.1, 0.5, 4) == "inconclusive"  # fewer than 5 seeds


def run_cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_the_cli_prints_json_and_a_table_and_refuses_a_path_without_runs(outcome_runs, tmp_path, capsys):
    outcome, root = outcome_runs
    code, out, _ = run_cli(["claims", str(root), "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert {tuple(sorted(c)) for c in payload["claims"]} == {
        ("high", "id", "low", "n", "needs", "statement", "statistic", "value", "verdict")}
    assert {c["verdict"] for c in payload["claims"]} == {outcome}
    code, out, _ = run_cli(["claims", str(root)], capsys)
    assert code == 0 and f"20 {outcome}" in out
    code, out, _ = run_cli(["claims", str(root), "--markdown"], capsys)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| id ")]
    assert code == 0 and len(rows) == 20 and all(line.endswith(f"**{outcome}** |") for line in rows)
    code, out, err = run_cli(["claims", str(tmp_path)], capsys)
    assert code == 2 and "no runs" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
