"""``sharing-lab claims RUNS…``: the paper's claims with Holm-adjusted verdicts, as text, Markdown (what
figures/README.md holds) or JSON; ``--plan``: the seeds and recipe commands that would decide them."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import InputError
from ..jobs.recipes import SCALES
from ..runs.sweeps import find_run_dirs
from .console import echo_json, fail


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}g}"


def _figure(claim) -> str:
    if claim.value is None:
        return "not testable"
    if claim.low is None:
        return f"{_number(claim.value)} (no interval)"
    return f"{_number(claim.value)} [{_number(claim.low)}, {_number(claim.high)}]"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def _seeds(value: int | None) -> str:
    from ..analysis.statistics import MAX_PLANNED

    return "?" if value is None else f"> {MAX_PLANNED}" if value > MAX_PLANNED else str(value)


def _directory(paths: tuple[str, ...]) -> str:
    """Where the plan's recipes add runs: the directory holding the runs (the one given, or the runs' parent)."""
    runs = find_run_dirs(paths)
    parents = {run.parent for run in runs}
    return str(parents.pop()) if len(parents) == 1 else str(Path(paths[0]))


def _markdown(results) -> None:
    click.echo("| id | claim | statistic | value [95% interval] | δ | n | p (Holm) | verdict |\n"
               "|---|---|---|---|---|---|---|---|")
    for claim in results:
        delta = "–" if claim.delta is None else f"±{claim.delta:g}"
        click.echo(f"| {claim.id} | {claim.statement} | {claim.statistic} | {_figure(claim)} | {delta} | {claim.n} | "
                   f"{_p(claim.p_adjusted)} | **{claim.verdict}** |")


def _tally(results) -> str:
    """How many claims got each verdict, e.g. "8 holds, 2 fails, 0 no effect, 19 inconclusive"."""
    from ..analysis.verdicts import counts

    return ", ".join(f"{count} {verdict}" for verdict, count in counts(results).items())


def _side_by_side(families: dict) -> None:
    """One Markdown row per claim and one column per family (e.g. per space): its figure and verdict. A claim's
    arms may name a family's own rate, so its statement is shown without it."""
    by_family = {family: {claim.id: claim for claim in results} for family, results in families.items()}
    statements = {}
    for results in families.values():
        for claim in results:
            statements.setdefault(claim.id, re.sub(r" \(τ = [^)]*\)", "", claim.statement))
    click.echo("| id | claim | " + " | ".join(families) + " |\n|---|---|" + "---|" * len(families))
    for claim_id, statement in statements.items():
        cells = [("–" if claims.get(claim_id) is None else
                  f"{_figure(claims[claim_id])}, n = {claims[claim_id].n}: **{claims[claim_id].verdict}**")
                 for claims in by_family.values()]
        click.echo(f"| {claim_id} | {statement} | " + " | ".join(cells) + " |")
    click.echo("| | verdicts | " + " | ".join(_tally(results) for results in families.values()) + " |")


def _text(results) -> None:
    for claim in results:
        click.echo(f"{claim.id:<3} {claim.verdict.upper():<12} {claim.statement}")
        adjusted = "" if claim.adjusted_low is None else \
            f"; at Holm's level {claim.level:.4g}: [{_number(claim.adjusted_low)}, {_number(claim.adjusted_high)}]"
        click.echo(f"    {claim.statistic}: {_figure(claim)}, n = {claim.n}{adjusted}")
        click.echo(f"    {claim.reason}")
        if claim.needs:
            click.echo(f"    needs: {claim.needs}")


def _show_plan(results, steps) -> None:
    by_id = {claim.id: claim for claim in results}
    for step in steps:
        claim = by_id[step.claim]
        if step.verdict != "inconclusive":
            click.echo(f"{step.claim:<3} {step.verdict}: nothing to add")
            continue
        click.echo(f"{step.claim:<3} {claim.statement}; {step.n} seeds in the smallest arm")
        click.echo(f"    seeds per arm for 80% power: {_seeds(claim.seeds_at_effect)} at the observed effect "
                   f"({_number(claim.value)}), {_seeds(claim.seeds_at_delta)} at δ ({_number(claim.delta)}), "
                   f"{_seeds(claim.seeds_to_equivalence)} to show equivalence within ±δ")
        click.echo(f"    {step.note}")
        if step.command:
            click.echo(f"    {step.command}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout (raw and adjusted p-values and "
              "intervals, each arm's runs).")
@click.option("--markdown", is_flag=True, help="A Markdown table (what figures/README.md holds).")
@click.option("--split-by", metavar="KEY", help="Report the claims per value of this configuration key (e.g. "
              "search.epochs) instead of refusing runs that differ in it.")
@click.option("--side-by-side", is_flag=True, help="With --split-by: one Markdown table, a column per value "
              "(each family decided on its own), for comparing e.g. two spaces.")
@click.option("--plan", "planned", is_flag=True, help="Per undecided claim, the seeds per arm that would decide "
              "it and the recipe command that adds those runs.")
@click.option("--scale", type=click.Choice(SCALES), default="embedded", show_default=True,
              help="With --plan: the recipes' scale.")
def claims(paths, as_json, markdown, split_by, side_by_side, planned, scale) -> None:
    """Test the paper's claims on the runs at or under PATHS: each claim's statistic over seeds, its 95% interval,
    Holm-adjusted p-values over the claims tested together, and a verdict (holds, fails, no effect: within the
    claim's margin δ by a TOST, inconclusive), from the records only."""
    from ..analysis.claims import claims_of  # reads runs as the figures do (matplotlib, seaborn)
    from ..analysis.statistics import ALPHA
    from ..analysis.verdicts import MIN_SEEDS

    if not find_run_dirs(paths):
        raise InputError(f"no runs (directories with config.json) under {', '.join(paths)}")
    if as_json and markdown:
        fail("--json and --markdown are exclusive: choose one output")
    if side_by_side and (split_by is None or as_json or markdown or planned):
        fail("--side-by-side needs --split-by and is its own output: drop --json, --markdown and --plan")
    families = claims_of(paths, split_by)
    if side_by_side:
        _side_by_side(families)
        return
    payload = {"min_seeds": MIN_SEEDS, "alpha": ALPHA, "families": {}}
    for group, results in families.items():
        if group and not as_json:
            click.echo(f"## {group}" if markdown else f"== {group} ==")
        entry: dict = {"claims": [claim.as_dict() for claim in results]}
        if planned:
            from ..jobs.plan import plan

            steps = plan(results, _directory(paths), scale)
            entry["plan"] = [vars(step) for step in steps]
            if not as_json:
                _show_plan(results, steps)
        elif markdown:
            _markdown(results)
        elif not as_json:
            _text(results)
        payload["families"][group or "all"] = entry
        if not as_json and not planned:
            if markdown:
                click.echo()
            tested = sum(claim.p is not None for claim in results)
            click.echo(_tally(results) + f" (Holm-adjusted over the {tested} claims "
                       f"tested at α = {ALPHA:g}; a verdict needs >= {MIN_SEEDS} seeds per arm and spread in each)")
    if as_json:
        echo_json(payload)


COMMANDS = (claims,)
