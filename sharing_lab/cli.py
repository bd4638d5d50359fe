"""The ``sharing-lab`` command line (DESIGN §4). Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import json
import sys

import click

from .errors import InputError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sharing-lab")
def cli() -> None:
    """Affine parameter sharing (APS) for neural channel number search."""


def _parse_widths(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"--widths must be comma-separated integers, got {text!r}") from None


@cli.command()
@click.argument("model")
@click.option("--widths", help="One width per decision, comma-separated (default: the base model).")
@click.option("--granularity", help="Decision granularity: conv, block, stage or residual (default per model).")
@click.option("--candidates", help="Candidate widths of every decision, comma-separated (CIFAR convention).")
@click.option("--image-size", type=int, help="Input resolution (default 32 for CIFAR models, 224 for ImageNet).")
@click.option("--num-classes", type=int, help="Classifier outputs (default 10 / 1000).")
@click.option("--in-channels", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def flops(model, widths, granularity, candidates, image_size, num_classes, in_channels, as_json) -> None:
    """MACs (FLOPs = 2 × MACs) and parameters of MODEL or of a width configuration of it.

    MACs count every convolution, the 1×1 projection shortcuts and the classifier.
    """
    from .flops import count
    from .layout import build_layout

    layout = build_layout(
        model, granularity, _parse_widths(candidates), num_classes=num_classes, in_channels=in_channels,
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
        click.echo(json.dumps(result))
        return
    click.echo(f"{model} at {layout.image_size}x{layout.image_size} ({layout.granularity} granularity, "
               f"{layout.num_decisions} decisions)")
    click.echo(f"widths  {','.join(map(str, chosen))}")
    click.echo(f"MACs    {cost.macs:,} ({cost.macs / 1e6:.2f}M)")
    click.echo(f"FLOPs   {cost.flops:,} (2 x MACs)")
    click.echo(f"params  {cost.params:,} ({cost.params / 1e6:.3f}M)")


@cli.command()
@click.option("--samples", type=click.IntRange(min=1000), default=200_000, show_default=True,
              help="Monte-Carlo samples of the meta-weight per covariance check.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def theorem(samples, seed, as_json) -> None:
    """Check Theorem 3.1 numerically; exit status 1 if a check fails."""
    from .theorem import run_checks

    report = run_checks(samples=samples, seed=seed)
    if as_json:
        click.echo(json.dumps(report))
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


def _progress() -> bool:
    return sys.stderr.isatty()


def _log(message: str) -> None:
    click.echo(message, err=True)


@cli.command("run-search")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--scheme", help="Sharing scheme: ordinal, independent, overlap:<alpha>, transitionary.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (TOML value).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--name", help="Run name (default: model-data-scheme-seed-time).")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue the stopped run in this directory.")
def run_search(config_file, scheme, overrides, out, name, seed, device, resume_dir) -> None:
    """Run one channel number search (default: the embedded digits search, minutes on a CPU).

    Under torchrun (``torchrun --nproc_per_node=N -m sharing_lab.cli run-search …``) the N processes run one
    search with DistributedDataParallel; ``data.batch_size`` stays the global batch.
    """
    import os
    import signal

    from .distributed import close_group
    from .launch import Request, start

    overrides = list(overrides)
    for flag, key in ((scheme, "sharing.scheme"), (seed, "seed"), (device, "device")):
        if flag is not None and flag != "":
            overrides.append(f"{key}={flag}")
    ranks = tuple(int(os.environ.get(key, default)) for key, default in
                  (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # set by torchrun
    request = Request(config_file, tuple(overrides), out, name, resume_dir)
    quiet = ranks[0] != 0
    try:
        search, group, _ = start(request, ranks, log=_log, progress=_progress())
    except InputError as error:
        if quiet:
            sys.exit(2)  # rank 0 says why
        raise error
    stop = {"requested": False}

    def request_stop(signum, frame) -> None:
        stop["requested"] = True
        if group.is_main:
            _log("stop requested: finishing the current epoch, then writing a checkpoint")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    search_dir = search.run_dir
    try:
        summary = search.run(stop_requested=lambda: stop["requested"])
    except KeyboardInterrupt:
        close_group(group)
        if quiet:
            sys.exit(130)
        launcher = (f"torchrun --nproc_per_node={group.world_size} -m sharing_lab.cli" if group.active
                    else "sharing-lab")
        _fail(f"stopped at epoch {search.epoch}; resume with: {launcher} run-search --resume {search_dir}", 130)
    except InputError:
        close_group(group)
        if quiet:
            sys.exit(2)
        raise
    close_group(group)
    if quiet:
        return
    exported = summary["exported"]
    click.echo(f"run directory: {search_dir}")
    click.echo(f"exported architecture: {summary['export_path']} (widths {exported['widths']}, "
               f"{exported['macs'] / 1e6:.3f}M MACs, val acc {exported['acc']:.3f})")
    click.echo(f"records: {search_dir}/{{scalars,probs,archs,layers,pairs}}/*.parquet "
               "(read with sharing_lab.read_table)")
    click.echo(f"plot it: sharing-lab plot all {search_dir.parent}")


def _load_search(run_dir: str):
    from pathlib import Path

    from . import rundir
    from .search import Search

    config, _ = rundir.read_config(run_dir)
    search = Search(config, Path(run_dir), log=_log)
    state = rundir.load_checkpoint(Path(run_dir), _log)
    if state is None:
        raise InputError(f"run {run_dir} has no checkpoint yet")
    search.load_state_dict(state)
    return search


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def beam(run_dir, top, as_json) -> None:
    """The top-N architectures of a run by the controller's sequence likelihood."""
    from .controller import beam_search

    search = _load_search(run_dir)
    rows = []
    for rank, (arch, log_prob) in enumerate(beam_search(search.controller, top, search.flops_left)):
        widths = search.layout.widths_of(arch)
        rows.append({"rank": rank, "widths": list(widths), "macs": search.macs(arch), "log_prob": log_prob})
    if as_json:
        click.echo(json.dumps({"run": str(run_dir), "top": rows}))
        return
    for row in rows:
        click.echo(f"{row['rank']:>3}  log p {row['log_prob']:9.3f}  {row['macs'] / 1e6:9.3f}M MACs  "
                   f"{','.join(map(str, row['widths']))}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--rank", type=click.IntRange(min=0), help="Export the beam row of this rank instead of the pick.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write here instead of RUN_DIR/arch.json.")
def export(run_dir, rank, out_file) -> None:
    """Write a run's chosen architecture as JSON (model, widths, MACs) for the plain-network builder."""
    from pathlib import Path

    from .export import export_payload, load_export
    from .fileio import atomic_write_json
    from .layout import build_layout
    from .records import read_table
    from .rundir import read_config

    config, _ = read_config(run_dir)
    layout, widths, payload = load_export(run_dir)
    if rank is not None:
        beams = read_table(run_dir, "archs").query("source == 'beam'")
        if "rank" not in beams or rank not in set(beams["rank"]):
            raise InputError(f"run {run_dir} has no beam row of rank {rank}")
        row = beams[beams["rank"] == rank].iloc[-1]
        widths = [int(w) for w in row["widths"].split(",")]
        layout = build_layout(payload["model"], payload["granularity"], num_classes=payload["num_classes"],
                              in_channels=payload["in_channels"], image_size=payload["image_size"])
        payload = export_payload(layout, widths, run=Path(run_dir).name, acc=float(row["acc"]),
                                 log_prob=float(row["log_prob"]), rank=rank)
    target = Path(out_file) if out_file else Path(run_dir) / "arch.json"
    if out_file and target.exists():
        raise InputError(f"{target} already exists")
    atomic_write_json(target, payload)
    click.echo(f"{target}: {payload['model']} widths {','.join(map(str, widths))}, {payload['macs']:,} MACs")


@cli.command("retrain")
@click.argument("source", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), help="Retrain the top-N beam architectures of a run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (retrain.*, runtime.*, device).")
@click.option("--out", default="runs", show_default=True, help="Where a new run is made for an ARCH_JSON source.")
@click.option("--name", help="Run name for an ARCH_JSON source.")
def retrain_command(source, top, overrides, out, name) -> None:
    """Train a searched architecture (RUN_DIR or ARCH_JSON) from scratch; record into the run's tables."""
    from pathlib import Path

    from . import config as cfgmod
    from . import rundir
    from .data import load_data
    from .export import load_export
    from .records import RecordWriter, read_table
    from .retrain import retrain
    from .runtime import resolve_device

    path = Path(source)
    jobs = []
    if path.is_dir():
        config, _ = rundir.read_config(path)
        config = cfgmod.apply_overrides(config, list(overrides))
        layout, widths, payload = load_export(path)
        if top:
            beams = read_table(path, "archs").query("source == 'beam'").sort_values("log_prob", ascending=False)
            for rank, row in enumerate(beams.head(top).itertuples()):
                jobs.append(([int(w) for w in row.widths.split(",")], float(row.log_prob), rank))
        else:
            jobs.append((widths, float(payload.get("log_prob", float("nan"))), 0))
        run_dir = path
    else:
        layout, widths, payload = load_export(path)
        base = cfgmod.Config()
        if "data" in payload:  # retrain on the data the architecture was searched on, unless overridden
            base = cfgmod.from_mapping({"data": payload["data"]}, base)
        config = cfgmod.apply_overrides(base, list(overrides))
        cfgmod.check(config)
        jobs.append((widths, float(payload.get("log_prob", float("nan"))), 0))
        run_dir = None
    data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size)
    if (data.in_channels, data.num_classes, data.image_size) != (layout.in_channels, layout.num_classes,
                                                                 layout.image_size):
        raise InputError(f"{source} is a {layout.in_channels}-channel {layout.image_size}x{layout.image_size} "
                         f"{layout.num_classes}-class network; data {config.data.name!r} is "
                         f"{data.in_channels}-channel {data.image_size}x{data.image_size} {data.num_classes}-class")
    if run_dir is None:
        run_dir = rundir.create(out, name or f"retrain-{path.stem}", config, {"source": str(path)})
    parts = [int(p.stem.split("-")[1]) for p in run_dir.glob("*/part-*.parquet")]
    writer = RecordWriter(run_dir, run_dir.name, next_part=max(parts, default=-1) + 1)
    for widths, log_prob, rank in jobs:
        retrain(layout, widths, config, data, resolve_device(config.device), writer, log=_log,
                progress=_progress(), log_prob=log_prob, rank=rank)
    click.echo(f"records: {run_dir}/archs (source=retrain)")


@cli.command()
@click.argument("figure")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", default="figures", show_default=True, type=click.Path(file_okay=False))
def plot(figure, paths, out_dir) -> None:
    """Draw FIGURE (fig3 … fig8, theorem, rank, or all) as PNG and PDF from the records of the runs in PATHS."""
    from pathlib import Path

    from .plots import FIGURES, find_run_dirs, plot_all
    from .plots import plot as draw

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


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--scale", type=click.Choice(["embedded", "paper"]), default="embedded", show_default=True)
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Runs in parallel.")
@click.option("--threads", type=click.IntRange(min=2), default=2, show_default=True, help="Threads per run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override for every run.")
def recipe(names, scale, out, jobs, threads, overrides) -> None:
    """Run analysis recipes (oit, overlap, tau, topn, all): the runs that feed the figures."""
    from pathlib import Path

    from .recipes import run_recipe

    results = run_recipe(list(names), scale, Path(out), jobs, list(overrides), threads, _log)
    failed = [name for name, status in results.items() if status != 0]
    click.echo(f"{len(results) - len(failed)} of {len(results)} runs finished in {out}")
    if failed:
        _fail(f"runs failed: {', '.join(failed)} (see {out}/<name>.log)", 1)
    click.echo(f"plot them: sharing-lab plot all {out} --out figures")


@cli.command()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--repeats", type=click.IntRange(min=3), default=20, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on CUDA, fp32 on CPU.")
@click.option("--memory-format", type=click.Choice(["auto", "contiguous", "channels_last"]), default="auto",
              show_default=True, help="auto: channels_last on CUDA.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def bench(device, repeats, batch, precision, memory_format, as_json) -> None:
    """Measure the APS step against a plain network, the Φ update, probe overhead and throughput."""
    import tempfile
    from pathlib import Path

    from .bench import probe_overhead, run_benchmarks
    from .runtime import resolve_device

    resolved = resolve_device(device)
    with tempfile.TemporaryDirectory() as scratch:
        probes = probe_overhead(resolved, Path(scratch))
    report = run_benchmarks(resolved, repeats, batch, probes["probe_overhead"], precision, memory_format)
    report["probe_detail"] = probes
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"device {report['device']} (torch {report['torch']}, {report['threads']} threads, "
               f"{report['precision']}, {report['memory_format']}), ResNet-20 32x32 batch {batch}, random "
               "architectures")
    click.echo(f"APS step (slicing, ordinal)    {report['aps_step_ms']:8.1f} ms   plain "
               f"{report['plain_step_ms']:.1f} ms   ratio {report['step_ratio']:.3f}")
    click.echo(f"APS step (einsum, transitionary){report['aps_step_einsum_ms']:7.1f} ms   ratio "
               f"{report['step_ratio_einsum']:.3f}")
    click.echo(f"Phi update (Eq. 5, all layers) {report['phi_update_ms']:8.2f} ms")
    click.echo(f"controller step (19 decisions) {report['controller_step_ms']:8.2f} ms")
    click.echo(f"images/s (APS step)            {report['images_per_s']:8.0f}")
    click.echo(f"probe overhead (default search) {report['probe_overhead']:7.1%}")
    click.echo(f"projected paper ResNet-20 search (600 epochs): {report['projected_paper_resnet20_search_h']:.1f} h")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning bad input into one line and exit status 2."""
    try:
        code = cli.main(args=argv, prog_name="sharing-lab", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help())
        sys.exit(0)
    except click.ClickException as error:
        _fail(error.format_message())
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except (InputError, ValueError) as error:
        _fail(str(error))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
