"""``sharing-lab groundtruth``: build a space's table (every architecture trained from scratch), import a
published benchmark's as one, and show a table with the figures that say whether it can judge a search."""

from __future__ import annotations

import math

import click

from ..analysis.truth_build import build
from ..truth.channel_bench_macro import SOURCE, import_results
from ..truth.regime import regime
from ..truth.table import SPACES, groundtruth, read_table_file, resolve_space, spread, summarise
from .console import echo_json, log


@click.group("groundtruth")
def groundtruth_group() -> None:
    """Ground-truth tables of search spaces: every architecture trained from scratch."""


@groundtruth_group.command("build")
@click.argument("space")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write here instead of the package's table (resumed if it exists).")
@click.option("--limit", type=click.IntRange(min=1), help="Train at most this many new rows (a build in pieces).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Populations (or networks) trained at once, in worker processes of one thread each.")
@click.option("--one-at-a-time", is_flag=True,
              help="Train each network alone instead of a seed's architectures as one population (how tables of "
                   "format 1 were built: a build resumes a table only in the way it was made).")
def groundtruth_build(space, out_file, limit, jobs, one_at_a_time) -> None:
    """Train every architecture of SPACE for every seed, a seed's architectures as one population on the same
    batches (or one at a time); resumable (finished rows are kept)."""
    path = build(space, out_file, progress=True, log=log, limit=limit, jobs=jobs, population=not one_at_a_time)
    rows, meta = read_table_file(path)
    figures = spread(rows)
    click.echo(f"{path}: {len(rows)} rows, {meta['wall_s']:.0f} s of training; best {figures['best']:.4f}, "
               f"median {figures['median']:.4f}, gap/SE {figures['ratio']:.1f}")


@groundtruth_group.command("import")
@click.argument("benchmark", type=click.Choice([SOURCE]))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--space", "model", required=True,
              type=click.Choice(sorted({s.name.removesuffix("-cifar10") for s in SPACES.values() if s.source})),
              help="The benchmark's space the file holds (Results_ResNet.json: cbm-resnet; Results_MobileNet.json: "
                   "cbm-mobilenet).")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="The CIFAR-10 directory the searches will use (data.dir): the table is written inside it.")
@click.option("--replace", is_flag=True, help="Replace a table imported before.")
def groundtruth_import(benchmark, file, model, data_dir, replace) -> None:
    """Convert the user's copy of a published benchmark's results FILE into a ground-truth table (JSON only,
    checked entry by entry; every architecture's MACs and parameters must equal ours)."""
    path = import_results(file, f"{model}-cifar10", data_dir, replace)
    rows, meta = read_table_file(path)
    figures = spread(rows)
    click.echo(f"{path}: {figures['architectures']} architectures x {len(meta['seeds'])} seeds from {file}; best "
               f"{figures['best']:.4f}, median {figures['median']:.4f}")


@groundtruth_group.command("show")
@click.argument("space")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where an imported table lives (data.dir).")
@click.option("--target", type=click.FloatRange(min=0, min_open=True),
              help="FLOPs target in MACs for the within-target figures (default: the space's own, else half the "
                   "widest architecture's).")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Architectures listed, best first (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout (every architecture).")
def groundtruth_show(space, data_dir, target, top, as_json) -> None:
    """The ground truth of SPACE: its spread, the paper's-regime figures (resolution, top-two gap per decision,
    within-target spread; paired over seeds) and the architectures by rank."""
    rows = groundtruth(space, data_dir)
    target = target if target is not None else resolve_space(space).target
    figures, table, fit = spread(rows), summarise(rows), regime(rows, target)
    if as_json:
        echo_json({"space": space, "spread": figures, "regime": fit, "architectures": table.to_dict("records")})
        return
    click.echo(f"{space}: {figures['architectures']} architectures x {figures['seeds']} seeds; best "
               f"{figures['best']:.4f}, median {figures['median']:.4f}, gap {figures['gap']:.4f} = "
               f"{figures['ratio']:.1f} x the mean standard error {figures['mean_se']:.4f}")
    click.echo(f"resolution (paired SE of {fit['best']} - {fit['second']}): {fit['resolution']:.3f} points")
    for d in fit["decisions"]:
        click.echo(f"  decision {d['decision']}: {d['best_width']} vs {d['second_width']}: gap {d['gap']:+.3f} "
                   f"± {d['se']:.3f} points = {d['gap_ratio']:.1f} x the resolution")
    click.echo(f"within {fit['target']:.4g} MACs: {fit['within_target']} architectures, best {fit['within_best']} "
               f"(most MACs: {fit['within_largest']}), best - median {fit['within_spread']:.2f} points = "
               f"{fit['spread_ratio']:.1f} x the resolution")
    for name, met in fit["requirements"].items():
        click.echo(f"  {'met' if met else 'NOT met'}: {name}")
    for row in table.head(top if top else len(table)).itertuples():
        val = "" if math.isnan(row.val_acc) else f"  val {row.val_acc:.4f}"
        click.echo(f"{row.rank:>5}  {row.widths:<12} test {row.test_acc:.4f} ± {row.test_se:.4f}{val}  "
                   f"{row.macs / 1e6:9.3f}M MACs")


COMMANDS = (groundtruth_group,)
