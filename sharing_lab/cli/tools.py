"""The tool commands of ``sharing-lab`` (list, flops, theorem, plot, explore, recipe); the run commands are in
:mod:`sharing_lab.cli.run`, the ground truths in :mod:`sharing_lab.cli.groundtruth`, the benchmarks in
:mod:`sharing_lab.cli.bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..aps.theorem import run_checks
from ..errors import InputError
from ..jobs.executors import SUBMITTED
from ..jobs.executors import executor_config as make_settings
from ..jobs.recipes import MAX_SEEDS, SCALES, run_recipe
from ..jobs.sweep_file import executor_table
from ..registry import DATASETS, MODELS, PRESETS, PROBES, SCHEMES
from ..runs.sweeps import find_run_dirs
from ..space.flops import count
from ..space.layout import build_layout
from .console import echo_json, fail, log


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def list_command(as_json) -> None:
    """What is registered: models, datasets, sharing schemes, probes and configuration presets (--config NAME)."""
    table = {"models": MODELS, "datasets": DATASETS, "schemes": SCHEMES, "probes": PROBES, "presets": PRESETS}
    if as_json:
        echo_json({kind: registry.names() for kind, registry in table.items()})
        return
    for kind, registry in table.items():
        click.echo(f"{kind}:")
        for name, doc in registry.describe():
            click.echo(f"  {name:<20} {doc}")


def _parse_widths(text: str | None, option: str = "--widths") -> list[int] | None:
    """Comma-separated positive integers (None when the option is not given)."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise InputError(f"{option} must be comma-separated positive integers, got {text!r}")
    return values


@click.command()
@click.argument("model")
@click.option("--widths", help="One width per decision, comma-separated (default: the base model).")
@click.option("--granularity", help="Decision granularity: conv, block, stage or residual (default per model).")
@click.option("--candidates", help="Candidate widths of every decision, comma-separated (CIFAR convention).")
@click.option("--image-size", type=click.IntRange(min=1),
              help="Input resolution (default 32 for CIFAR models, 224 for ImageNet).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classifier outputs (default 10 / 1000).")
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def flops(model, widths, granularity, candidates, image_size, num_classes, in_channels, as_json) -> None:
    """MACs (FLOPs = 2 × MACs) and parameters of MODEL or of a width configuration of it.

    MACs count every convolution, the 1×1 projection shortcuts and the classifier.
    """
    layout = build_layout(
        model, granularity, _parse_widths(candidates, "--candidates"), num_classes=num_classes, in_channels=in_channels,
        image_size=image_size,
    )
    chosen = _parse_widths(widths)
    if chosen is None:
        chosen = list(layout.base_widths())
    layout.check_widths(chosen)
    for decision, width in zip(layout.decisions, chosen):
        if width > decision.meta_width:
            raise InputError(
                f"width {width} of {decision.name} is larger than its meta width {decision.meta_width}"
            )
    cost = count(layout, chosen)
    result = {
        "model": model,
        "granularity": layout.granularity,
        "image_size": layout.image_size,
        "widths": chosen,
        "macs": cost.macs,
        "flops": cost.flops,
        "params": cost.params,
    }
    if as_json:
        echo_json(result)
        return
    click.echo(f"{model} at {layout.image_size}x{layout.image_size} ({layout.granularity} granularity, "
               f"{layout.num_decisions} decisions)")
    click.echo(f"widths  {','.join(map(str, chosen))}")
    click.echo(f"MACs    {cost.macs:,} ({cost.macs / 1e6:.2f}M)")
    click.echo(f"FLOPs   {cost.flops:,} (2 x MACs)")
    click.echo(f"params  {cost.params:,} ({cost.params / 1e6:.3f}M)")


@click.command()
@click.option("--samples", type=click.IntRange(min=1000), default=200_000, show_default=True,
              help="Monte-Carlo samples of the meta-weight per covariance check.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def theorem(samples, seed, as_json) -> None:
    """Check Theorem 3.1 numerically; exit status 1 if a check fails."""
    report = run_checks(samples=samples, seed=seed)
    if as_json:
        echo_json(report)
    else:
        width = max(len(c["name"]) for c in report["checks"])
        for check in report["checks"]:
            mark = "PASS" if check["passed"] else "FAIL"
            click.echo(f"{mark}  {check['name']:<{width}}  {check['detail']}")
        worst = report["worst_relative_error"]
        click.echo(f"worst relative error of the covariance checks: {worst:.2%}")
        click.echo("Theorem 3.1 holds numerically." if report["passed"] else "Theorem 3.1 checks FAILED.")
    if not report["passed"]:
        sys.exit(1)


@click.command()
@click.argument("figure")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", default="figures", show_default=True, type=click.Path(file_okay=False))
def plot(figure, paths, out_dir) -> None:
    """Draw FIGURE (fig3 … fig8, theorem, rank, or all) as PNG and PDF from the records of the runs in PATHS."""
    from ..plots import FIGURES, plot_all  # matplotlib and seaborn: 0.7 s to import, paid by the plot commands
    from ..plots import plot as draw

    if figure not in FIGURES and figure != "all":
        raise InputError(f"unknown figure {figure!r}; known: {', '.join(FIGURES)}, all")
    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path} does not exist")
    if figure != "theorem" and not find_run_dirs([Path(p) for p in paths]):
        raise InputError(f"no runs (directories with config.json) under {', '.join(paths)}")
    if figure == "all":
        written, skipped = plot_all([Path(p) for p in paths], Path(out_dir))
        for path in written:
            click.echo(f"wrote {path}")
        for name, reason in skipped.items():
            click.echo(f"skipped {name}: {reason}")
        if not written:
            raise InputError("no figure could be drawn from the given runs")
        return
    for path in draw(figure, [Path(p) for p in paths], Path(out_dir)):
        click.echo(f"wrote {path}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--html", "html", required=True, type=click.Path(dir_okay=False),
              help="Write the explorer as one self-contained HTML file (works in a browser with no Python).")
@click.option("--run", help="Initial run shown (default: all).")
@click.option("--arm", help="Initial arm shown, e.g. 'ordinal' (default: all).")
@click.option("--layer", help="Initial APS layer of the Φ views (default: all).")
def explore(paths, html, run, arm, layer) -> None:
    """Interactive linked views of the runs in PATHS (Φ against alignment and coupled norm, decision probabilities,
    accuracy and ground-truth scores) with controls, saved as HTML; in Jupyter use sharing_lab.explore(PATH)."""
    from ..plots.explorer import explore as make

    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path} does not exist")
    if not find_run_dirs([Path(p) for p in paths]):
        raise InputError(f"no runs (directories with config.json) under {', '.join(paths)}")
    explorer = make([Path(p) for p in paths]).select(run=run, arm=arm, layer=layer)
    path = explorer.save_html(html)
    data = explorer.data
    click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {len(data.runs)} runs, {len(data.arms)} arms, "
               f"{len(data.layer_names)} layers")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--scale", type=click.Choice(SCALES), default="embedded", show_default=True)
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--executor", "kind", type=click.Choice(["local", "slurm", "ray"]),
              help="Where the runs go: local worker processes (default), SLURM (submitit) or Ray.")
@click.option("--executor-config", type=click.Path(dir_okay=False), help="TOML file with an [executor] table.")
@click.option("--executor-set", "executor_overrides", multiple=True, metavar="KEY=VALUE",
              help="Executor option (partition, time_min, gpus_per_job, cpus_per_job, address, num_cpus, …).")
@click.option("--jobs", type=click.IntRange(min=1), help="Local executor: runs in parallel (default 1).")
@click.option("--threads", type=click.IntRange(min=2), help="Torch threads per run (default 2).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override for every run.")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS),
              help="Seeds 0..N-1 of every arm repeated over seeds (default 5; 3 at paper scale): more seeds add runs "
                   "and keep the finished ones.")
@click.option("--arm", "arms", multiple=True, metavar="ARM",
              help="Only this arm's runs (a job name without its -sK suffix, e.g. oit-ordinal); repeatable.")
def recipe(names, scale, out, kind, executor_config, executor_overrides, jobs, threads, overrides, seeds,
           arms) -> None:
    """Run analysis recipes (oit, overlap, tau, topn, all) or sweep files (NAME.toml with a [sweep] table): the
    runs that feed the figures. Finished runs are skipped and stopped, killed or preempted ones resumed, so a
    recipe is resumed by submitting it again. Executor options: defaults < the sweep file's [executor] table <
    --executor-config < --executor/--jobs/--threads < --executor-set."""
    settings = None
    for name in names:
        if name.endswith(".toml") and Path(name).is_file():
            settings = make_settings(executor_table(name), base=settings)
    if executor_config:
        settings = make_settings(executor_table(executor_config), base=settings)
    given = {"kind": kind, "jobs": jobs, "threads": threads}
    settings = make_settings({k: v for k, v in given.items() if v is not None}, list(executor_overrides), settings)
    results = run_recipe(list(names), scale, Path(out), list(overrides), settings, log, seeds, arms)
    failed = [name for name, status in results.items() if status not in (0, SUBMITTED)]
    submitted = [name for name, status in results.items() if status == SUBMITTED]
    if submitted:
        click.echo(f"{len(submitted)} runs submitted; their state: sharing-lab runs {out}; submit the same command "
                   "again once they ended to resume any that were stopped")
        return
    click.echo(f"{len(results) - len(failed)} of {len(results)} runs finished in {out}")
    if failed:
        fail(f"runs failed: {', '.join(failed)} (see {out}/<name>.log); submitting the recipe again resumes them", 1)
    click.echo(f"plot them: sharing-lab plot all {out} --out figures")


COMMANDS = (list_command, flops, theorem, plot, explore, recipe)
