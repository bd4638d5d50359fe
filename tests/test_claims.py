"""``sharing-lab claims``: record sets built so that every claim holds, fails, shows no effect or stays
inconclusive under the rules of issue 23 (Holm over the family, bounded intervals, TOST margins, distinct sharing
levels, T's trend against O's, comparable arms), and the CLI's tables, JSON, refusals and plan."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sharing_lab.analysis.claims import claims_of
from sharing_lab.analysis.verdicts import VERDICTS
from sharing_lab.cli import main
from sharing_lab.config import Config, apply_overrides
from sharing_lab.runs.records import RecordWriter
from sharing_lab.runs.rundir import write_config

EPOCHS, WARMUP, EVAL_EVERY, STEPS = 8, 4, 2, 10
SEEDS = 11  # a sign-flip test over the seeds of one arm reaches Holm's first step (α/29) from 11 seeds
TAUS = (1e-6, 1e-5, 1e-4)  # the middle one is the transitionary arm of the scheme comparisons
TARGET = 5e5
JITTER = [-0.1, 0.05, 0.0, 0.1, -0.05, 0.08, -0.03, 0.02, -0.07, 0.04, 0.09]  # per seed, far below every effect
# per seed, the sign of every effect: as the paper says (+1), against it (−1), none (0), or both in turn
EFFECTS = {"holds": [1] * SEEDS, "fails": [-1] * SEEDS, "no effect": [0] * SEEDS,
           "inconclusive": [(-1) ** seed for seed in range(SEEDS)]}
IDS = ["1a", "1b", "1c", "1d", "2a", "2b", "3", "4a", "4b", "5a", "5b", "5c", "6", "7a", "7b", "7c", "8a", "8b", "8c",
       "8d", "8e", "8f", "8g", "8h", "8i", "9a", "9b", "10a", "10b"]
# Where a record set cannot give its outcome's verdict, and why.
EXCEPTIONS = {
    "holds": {},
    "fails": {},
    "no effect": {
        "1c": "holds", "1d": "holds",  # claims of no effect hold when there is none
        "2b": "inconclusive", "3": "inconclusive",  # equal values at every level: no rank correlation to take
        # rank correlations of four records take steps of 0.2: both arms' ±0.2 spread hides a ±0.2 margin
        "4a": "inconclusive", "4b": "inconclusive",
        "6": "inconclusive",  # 0 of 11 against 0 of 11: Newcombe's interval is wider than ±0.2
        "8i": "inconclusive",  # a share against one half has no margin: half the searches within it tells nothing
    },
    "inconclusive": {},
}
# the ranks of four search-phase records (epochs 4..7) giving Spearman ρ against time of +1, +0.8 (T), ±0.2 (O)
FALLING, FALLING_SWAPPED, DRIFT_UP, DRIFT_DOWN = [4, 3, 2, 1], [4, 2, 3, 1], [4, 1, 2, 3], [1, 4, 3, 2]
LEVEL = {"independent": 0.0, "overlap:0.25": 1 / 3, "overlap:0.5": 2 / 3}  # sharing level's rank; others: 1


def fake_run(root, scheme: str, seed: int, effect: int, tau: float = TAUS[1], target: float | None = None,
             scheduled: bool = False, epochs: int = EPOCHS) -> str:
    """A search run whose records carry each claim's effect with sign ``effect``; ``scheduled``: a transitionary
    run under the Φ schedule (else at the constant ``tau``)."""
    name = f"{scheme.replace(':', '')}-{'schedule' if scheduled else f'{tau:g}'}-{target}-{epochs}-s{seed}"
    run_dir = root / name
    run_dir.mkdir(parents=True)
    overrides = [f"sharing.scheme={scheme}", f"seed={seed}", f"search.epochs={epochs}",
                 f"search.warmup_epochs={WARMUP}", f"search.eval_every={EVAL_EVERY}"]
    if not scheduled:
        overrides.append(f"sharing.transition={tau}")
    if target is not None:
        overrides.append(f"search.flops_target={target}")
    write_config(run_dir, apply_overrides(Config(), overrides), {})
    j, e = JITTER[seed], effect
    family = scheme.partition(":")[0]
    t, o, i = family == "transitionary", family == "ordinal", family == "independent"
    main_t = t and tau == TAUS[1] and not scheduled
    high_tau, low_tau = t and tau == TAUS[2] and not scheduled, t and tau == TAUS[0] and not scheduled
    level = sharing = LEVEL.get(scheme, 1.0)
    if seed % 2 and scheme in ("overlap:0.25", "overlap:0.5"):  # odd seeds: the middle levels swap their values
        level = 1 - level
    drift = DRIFT_UP if seed % 2 == 0 else DRIFT_DOWN
    falling = FALLING if seed % 2 == 0 else FALLING_SWAPPED
    late = -0.05 if (main_t or scheduled) and e < 0 else 0.0  # T's final accuracy leaves O's and I's (1c, 1d)
    rows = []
    for epoch in range(epochs):
        search = epoch >= WARMUP
        phi = 1e3 * 100 ** sharing * ((1 - 1e-6) if t else 1.0)  # T's warm-up Φ: O's up to its initial noise
        if t and search:
            phi = 1e5 * 0.5 ** (epoch - WARMUP + 1)
        values = {"steps_per_epoch": STEPS, "phi": phi,
                  "train_acc": 0.5 + (0.0 if i else 0.05 * e) + 0.001 * j}
        if search:  # T's alignment and coupling fall over the search with the sign, O's drift (claim 4)
            rank = (falling if e > 0 else falling[::-1] if e < 0 else drift) if main_t else drift
            values["cos_align"] = 0.5 + 0.01 * rank[(epoch - WARMUP) % 4]
            values["coupled_norm"] = 1.0 + 0.01 * rank[(epoch - WARMUP) % 4]
            values["entropy"] = 2.0 + 0.01 * j + (0.5 * e if o or low_tau or high_tau else 0.0)
        else:  # warm-up: both grow with the sharing level (claims 2, 3); I's coupling is zero
            values["cos_align"] = 0.5 + 0.2 * e * level + 0.001 * j
            values["coupled_norm"] = 0.0 if i else 1.0 + 0.2 * e * level + 0.001 * j
        if (epoch + 1) % EVAL_EVERY == 0:
            if not search:
                mean = 0.8 + 0.002 * j
            elif epoch < epochs - 1:
                mean = 0.85 + 0.003 * j - (0.1 * e if high_tau else 0.0)
            else:
                mean = 0.8 + 0.001 * j + late + (0.02 * e if scheduled else 0.0) - (0.1 * e if high_tau else 0.0)
            values["val_acc_mean"] = mean
        rows += [{"step": (epoch + 1) * STEPS, "epoch": epoch, "name": k, "value": float(v)} for k, v in values.items()]
    wrong = (i and e > 0) or (main_t and e < 0)  # claim 6
    kendall = 0.6 + (0.2 * e if main_t else 0.4 * e if scheduled else 0.0) + 0.01 * j
    final = epochs * STEPS
    rows += [{"step": final, "epoch": epochs - 1, "name": k, "value": float(v)}
             for k, v in (("gt_top1_prob", 0.3 + (0.3 * e if main_t else 0.0) + 0.01 * j), ("gt_kendall", kendall),
                          ("gt_regret", 5.0 if wrong else 0.04))]
    writer = RecordWriter(run_dir, name)
    writer.add("scalars", rows)
    top = 0.9 + (0.05 * e if main_t else 0.0) + 0.001 * j
    slope = 0.01 + (0.05 * e if main_t else 0.0) + 0.0001 * j  # top-1 minus the beam's mean (claims 8c, 8d)
    writer.add("archs", [{"epoch": epochs - 1, "source": "beam", "widths": f"{r + 1},4",
                          "macs": 1000 + (2 - r if target else r), "log_prob": -1.0 - r, "acc": 0.8,
                          "gt_acc": top - slope * r} for r in range(3)])
    margin = 0.4 + (0.3 * e if i else 0.0) + 0.01 * j  # claim 5c
    writer.add("probs", [{"step": final, "epoch": epochs - 1, "layer": layer, "choice": c, "width": c + 1,
                          "prob": p} for layer in range(2) for c, p in enumerate((0.5 + margin / 2, 0.5 - margin / 2))])
    writer.flush()
    if target is not None:  # claim 8i: the exported architecture within the target or above it
        within = e > 0 or (e == 0 and seed % 2 == 0)
        (run_dir / "summary.json").write_text(json.dumps({"exported": {"widths": "1,4",
                                                                       "macs": TARGET - 1 if within else TARGET + 1}}))
    return name


def build(root, outcome: str, seeds: int = SEEDS) -> None:
    for seed, effect in enumerate(EFFECTS[outcome][:seeds]):
        for scheme in ("ordinal", "independent", "transitionary"):
            fake_run(root, scheme, seed, effect)
            fake_run(root, scheme, seed, effect, target=TARGET)
        fake_run(root, "transitionary", seed, effect, scheduled=True)
        fake_run(root, "transitionary", seed, effect, tau=TAUS[0])
        fake_run(root, "transitionary", seed, effect, tau=TAUS[2])
        for alpha in (0.25, 0.5):
            fake_run(root, f"overlap:{alpha}", seed, effect)


@pytest.fixture(scope="module", params=sorted(EFFECTS))
def outcome_runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    build(root, request.param)
    return request.param, root, claims_of([root])[""]


def test_every_claim_gets_the_verdict_its_records_were_built_for(outcome_runs):
    outcome, _, results = outcome_runs
    assert [claim.id for claim in results] == IDS
    expected = {claim.id: EXCEPTIONS[outcome].get(claim.id, outcome) for claim in results}
    wrong = {claim.id: (claim.verdict, claim.value, claim.low, claim.high, claim.reason) for claim in results
             if claim.verdict != expected[claim.id]}
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items())
    for claim in results:
        assert claim.n >= SEEDS or claim.value is None, claim
        if claim.value is not None and claim.low is not None:
            assert claim.low <= claim.value <= claim.high, claim
        if claim.p is not None:  # Holm never lowers a p-value, and the adjusted level is stricter than 95%
            assert claim.p_adjusted >= claim.p and claim.level >= 0.95
            assert claim.adjusted_low <= claim.low + 1e-12 and claim.adjusted_high >= claim.high - 1e-12


def test_correlation_intervals_stay_within_their_bounds(outcome_runs):
    _, _, results = outcome_runs
    for claim in results:
        if claim.id in ("2b", "3") and claim.low is not None:
            assert -1 <= claim.adjusted_low <= claim.low <= claim.high <= claim.adjusted_high <= 1, claim
        if claim.id in ("4a", "4b") and claim.low is not None:  # differences of correlations
            assert -2 <= claim.low <= claim.high <= 2, claim


def test_ties_in_phi_are_one_sharing_level(outcome_runs):
    """T's warm-up Φ is O's up to a relative 1e-6: one level, so a seed has four (I, 0.25, 0.5, O), not five."""
    outcome, _, results = outcome_runs
    levels = {claim.id: claim.detail.get("levels_per_seed") for claim in results}
    if outcome != "no effect":
        assert set(levels["2b"].values()) == {4} and set(levels["3"].values()) == {3}


def test_five_seeds_cannot_decide_a_rank_correlation_and_say_why(tmp_path):
    build(tmp_path, "holds", seeds=5)
    results = {claim.id: claim for claim in claims_of([tmp_path])[""]}
    assert results["1a"].verdict == "holds"  # Welch's t decides at five seeds
    for id in ("2b", "3"):
        assert results[id].verdict == "inconclusive" and results[id].low > 0, results[id]
        assert "cannot go below p = 0.062" in results[id].reason
        assert results[id].seeds_at_effect >= SEEDS  # the plan asks for the seeds a sign-flip test needs


def test_an_arm_of_equal_values_gives_no_verdict(tmp_path):
    build(tmp_path, "holds", seeds=6)
    for seed in range(6):  # O's warm-up training accuracy: the same value at every seed
        path = next(tmp_path.glob(f"ordinal-1e-05-None-{EPOCHS}-s{seed}")) / "scalars"
        for part in path.glob("*.parquet"):
            table = pd.read_parquet(part)
            table.loc[table["name"] == "train_acc", "value"] = 0.55
            table.to_parquet(part)
    claim = {claim.id: claim for claim in claims_of([tmp_path])[""]}["1a"]
    assert claim.verdict == "inconclusive" and "all equal" in claim.reason and claim.p is None


def test_too_few_seeds_or_missing_runs_are_inconclusive_and_say_what_is_needed(tmp_path):
    for seed in range(2):
        fake_run(tmp_path, "ordinal", seed, 1)
        fake_run(tmp_path, "transitionary", seed, 1)
    results = {claim.id: claim for claim in claims_of([tmp_path])[""]}
    assert all(claim.verdict == "inconclusive" for claim in results.values())
    assert results["1a"].value is None and "runs of O, I and T" in results["1a"].needs  # no I runs
    assert results["5a"].n == 2 and results["5a"].value is not None and "≥ 5 seeds" in results["5a"].needs
    assert "three or more τ" in results["7a"].needs


def run_cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def holding_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("holding")
    build(root, "holds")
    return root, claims_of([root])[""]


def test_the_cli_prints_json_a_table_and_markdown(holding_runs, capsys):
    root, results = holding_runs
    code, out, _ = run_cli(["claims", root, "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    claims = payload["families"]["all"]["claims"]
    assert [c["id"] for c in claims] == IDS
    assert {"p", "p_adjusted", "low", "high", "adjusted_low", "adjusted_high", "p_equivalent", "delta", "arms",
            "reason", "quote"} <= set(claims[0])
    assert claims[0]["arms"]["O"] == sorted(f"ordinal-1e-05-None-{EPOCHS}-s{seed}" for seed in range(SEEDS))
    assert claims[0]["quote"].startswith("It can be found that the accuracy of both ASP-O and ASP-T")
    code, out, _ = run_cli(["claims", root], capsys)
    counts = {verdict: sum(claim.verdict == verdict for claim in results) for verdict in VERDICTS}
    assert code == 0 and ", ".join(f"{n} {v}" for v, n in counts.items()) in out
    code, out, _ = run_cli(["claims", root, "--markdown"], capsys)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| id ")]
    assert code == 0 and [row.split(" | ")[0][2:] for row in rows] == IDS
    assert all(row.endswith(f"**{claim.verdict}** |") for row, claim in zip(rows, results))


def test_a_run_that_differs_is_refused_naming_the_key_and_split_on_request(tmp_path, capsys):
    build(tmp_path, "holds", seeds=5)
    fake_run(tmp_path, "ordinal", 7, 1, epochs=EPOCHS + 2)
    code, out, err = run_cli(["claims", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert "search.epochs" in err and "--split-by search.epochs" in err
    code, out, err = run_cli(["claims", tmp_path, "--split-by", "search.epochs", "--json"], capsys)
    families = json.loads(out)["families"]
    assert code == 0 and set(families) == {f"search.epochs={EPOCHS}", f"search.epochs={EPOCHS + 2}"}
    assert {c["id"]: c["verdict"] for c in families[f"search.epochs={EPOCHS}"]["claims"]}["1a"] == "holds"
    assert all(c["verdict"] == "inconclusive" for c in families[f"search.epochs={EPOCHS + 2}"]["claims"])
    code, _, err = run_cli(["claims", tmp_path, "--split-by", "search.nothing"], capsys)
    assert code == 2 and "no such configuration key" in err
    code, out, err = run_cli(["claims", tmp_path, "--split-by", "search.epochs", "--side-by-side"], capsys)
    lines = out.splitlines()
    assert code == 0, err
    assert lines[0] == f"| id | claim | search.epochs={EPOCHS} | search.epochs={EPOCHS + 2} |"
    row = next(line for line in lines if line.startswith("| 1a |")).split(" | ")
    assert row[2].endswith(", n = 5: **holds**") and row[3].endswith(": **inconclusive** |")
    assert lines[-1].startswith("| | verdicts | ") and len(lines) == 2 + len(families[f"search.epochs={EPOCHS}"]
                                                                              ["claims"]) + 1
    code, out, err = run_cli(["claims", tmp_path, "--side-by-side"], capsys)
    assert code == 2 and "--side-by-side needs --split-by" in err and "Traceback" not in out + err


def test_the_plan_on_one_seed_per_arm_names_runs(tmp_path, capsys):
    """One seed of the embedded recipes' arms: the plan asks for a pilot of five seeds per arm and gives the
    recipe command that adds them to the directory, not verdicts."""
    for scheme in ("ordinal", "independent", "transitionary"):
        fake_run(tmp_path, scheme, 0, 1)
    for path in tmp_path.iterdir():  # the recipes' names
        family = path.name.partition("-")[0]
        path.rename(tmp_path / f"oit-{family}-s0")
    code, out, err = run_cli(["claims", tmp_path, "--plan"], capsys)
    assert code == 0, err
    assert "HOLDS" not in out and "FAILS" not in out
    command = f"sharing-lab recipe oit --seeds 5 --arm oit-independent --arm oit-ordinal --out {tmp_path}"
    assert command in out
    code, out, _ = run_cli(["claims", tmp_path, "--plan", "--json"], capsys)
    plan = {step["claim"]: step for step in json.loads(out)["families"]["all"]["plan"]}
    assert plan["1a"]["seeds"] == 5 and plan["1a"]["command"] == command
    assert plan["1a"]["arms"] == ["oit-independent", "oit-ordinal"]


def test_a_path_without_runs_and_clashing_options_are_refused(tmp_path, capsys):
    code, out, err = run_cli(["claims", tmp_path], capsys)
    assert code == 2 and "no runs" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
