"""The records committed behind ``figures/`` (``records/embedded`` and ``records/fashion-mnist``, from ``sharing-lab
recipe all``): every claim is tested on at least five seeds per arm, ``figures/README.md`` holds the table
``sharing-lab claims`` prints for each, and the default search's accuracy at the end is within a point of its best
(issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharing_lab import read_table
from sharing_lab.analysis.claims import claims_of
from sharing_lab.analysis.verdicts import MIN_SEEDS, VERDICTS
from sharing_lab.cli import main
from sharing_lab.config import Config
from sharing_lab.plots.runs import RunSet

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "records" / "embedded"
FASHION_RECORDS = ROOT / "records" / "fashion-mnist"
README = ROOT / "figures" / "README.md"
CLAIMS_TESTED = {RECORDS: 29, FASHION_RECORDS: 29}

pytestmark = pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed records in this checkout")


def _printed_lines(args: list[str], capsys) -> tuple[int | None, list[str]]:
    """The CLI's exit code and the non-blank lines it printed for ``args``."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def _missing_from_readme(lines: list[str]) -> list[str]:
    text = README.read_text().splitlines()
    return [line for line in lines if line not in text]


@pytest.mark.parametrize("records", list(CLAIMS_TESTED), ids=lambda path: path.name)
def test_every_claim_is_tested_on_at_least_five_seeds_per_arm(records):
    claims = claims_of([records])[""]
    assert len(claims) == CLAIMS_TESTED[records]
    for claim in claims:
        assert claim.value is not None and claim.low is not None, claim
        assert claim.n >= MIN_SEEDS, claim
        assert claim.verdict in VERDICTS


@pytest.mark.parametrize("records", list(CLAIMS_TESTED), ids=lambda path: path.name)
def test_the_figures_readme_holds_the_claims_table_of_these_records(records, capsys):
    """Every line of ``sharing-lab claims records/… --markdown`` (the table and its count of verdicts) is in
    figures/README.md, as printed, for both spaces' records."""
    code, lines = _printed_lines(["claims", str(records), "--markdown"], capsys)
    assert code == 0
    assert len(lines) == 2 + CLAIMS_TESTED[records] + 1
    missing = _missing_from_readme(lines)
    assert not missing, f"figures/README.md is not what claims prints; run: sharing-lab claims " \
                        f"records/{records.name} --markdown\n" + "\n".join(missing)


def test_the_committed_runs_are_the_recipes_default_budget():
    runs = RunSet.from_paths([RECORDS])
    assert len(runs) >= 45
    default = Config().search
    assert set(runs.meta["epochs"]) == {default.epochs} and set(runs.meta["warmup_epochs"]) == {default.warmup_epochs}
    for run in runs:
        assert not list(run.path.glob("checkpoint*")), run.path  # records only


def test_the_fashion_mnist_runs_are_the_presets_searches_on_its_space():
    """Every committed Fashion-MNIST run searched the preset's space (its data, model and schedule) and was scored
    against the shipped table of ``fashion-mnist-resnet20-x124``; the targeted arms used the space's target."""
    from sharing_lab.truth.table import SPACES

    runs = RunSet.from_paths([FASHION_RECORDS])
    assert len(runs) >= 45
    assert set(runs.meta["data"]) == {"fashion-mnist"} and set(runs.meta["model"]) == {"resnet20"}
    assert set(runs.meta["epochs"]) == {45} and set(runs.meta["warmup_epochs"]) == {15}
    targets = set(runs.meta["flops_target"].dropna())
    assert targets == {SPACES["fashion-mnist-resnet20-x124"].target}
    for run in runs:
        assert not list(run.path.glob("checkpoint*")), run.path
        scalars = run.table("scalars")
        assert (scalars["name"] == "gt_kendall").any(), run.path


@pytest.mark.parametrize("seed", range(5))
def test_the_default_search_keeps_its_accuracy_to_the_end(seed):
    """The default search is the recipes' Φ-scheduled transitionary arm. The widest architecture's validation
    accuracy ends within 1 point of its search-phase best, and the supernet's accuracy expected under the
    controller (exact: Σ_a p(a)·acc(a) over the whole space) is highest at the end. (The mean of 20 *sampled*
    architectures is not held to this: with a width-1 stage some of them collapse, and a draw moves it by several
    points even where nothing moves any more, in O as well; see figures/README.md.)"""
    run = RECORDS / f"oit-scheduled-s{seed}"
    scalars = read_table(run, "scalars")
    rows = scalars[(scalars["name"] == "val_acc_widest") & (scalars["epoch"] >= Config().search.warmup_epochs)]
    rows = rows.sort_values("step")
    assert rows["value"].max() - rows["value"].iloc[-1] <= 0.01
    space = read_table(run, "space")
    expected = (space.assign(weighted=space["prob"] * space["supernet_acc"]).groupby("epoch")
                .apply(lambda g: g["weighted"].sum() / g["prob"].sum(), include_groups=False).sort_index())
    assert expected.iloc[-1] == expected.max()


def test_rescoring_against_the_table_a_run_was_scored_with_gives_its_recorded_scores():
    """The Φ-scheduled runs were scored live against the shipped 24-seed table: recomputing their gt_* from the
    ``space`` table (what claims and the gt figure do for every run) gives what they recorded."""
    from sharing_lab.analysis.measures import truth_of
    from sharing_lab.truth.scoring import rescore

    run = RunSet.from_paths([RECORDS / "oit-scheduled-s0"]).runs[0]
    fresh = rescore(run.table("space"), truth_of(run)).set_index("step")
    scalars = run.table("scalars")
    for name in ("gt_kendall", "gt_spearman", "gt_top1_prob", "gt_top5_prob"):
        recorded = scalars[scalars["name"] == name].set_index("step")["value"]
        assert fresh[name].to_numpy() == pytest.approx(recorded.loc[fresh.index].to_numpy(), rel=1e-9), name


def test_the_figures_readme_holds_both_spaces_side_by_side(capsys):
    """The comparison table in figures/README.md is what ``claims records/embedded records/fashion-mnist
    --split-by data.name --side-by-side`` prints."""
    if not FASHION_RECORDS.is_dir():
        pytest.skip("no Fashion-MNIST records in this checkout")
    code, lines = _printed_lines(["claims", str(RECORDS), str(FASHION_RECORDS), "--split-by", "data.name",
                                  "--side-by-side"], capsys)
    assert code in (0, None)
    assert len(lines) == 2 + 29 + 1
    missing = _missing_from_readme(lines)
    assert not missing, "figures/README.md's side-by-side table is not what claims prints\n" + "\n".join(missing)
