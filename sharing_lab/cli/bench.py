"""``sharing-lab bench``: the search step against a plain network, the Φ update, probe overhead and throughput;
operators per step (``--ops``); where a whole search's time goes (``--phases``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..analysis.bench import loop_ops, ops_report, phases, probe_overhead, run_benchmarks
from ..compute.runtime import resolve_device
from ..config import resolve
from .console import echo_json


@click.command()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--repeats", type=click.IntRange(min=3), default=20, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on CUDA, fp32 on CPU.")
@click.option("--memory-format", type=click.Choice(["auto", "contiguous", "channels_last"]), default="auto",
              show_default=True, help="auto: channels_last on CUDA.")
@click.option("--ops", is_flag=True, help="Count the aten operators per step instead of timing (CPU, "
              "deterministic; paper preset, batch 32 unless --batch is given; its pieces and its real loop).")
@click.option("--phases", is_flag=True, help="Run a whole search (--config, --set; default: the embedded one) and "
              "print where its time goes, phase by phase.")
@click.option("--config", "config_file", help="With --phases: TOML configuration file or preset name.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --phases: configuration "
              "override (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def bench(ctx, device, repeats, batch, precision, memory_format, ops, phases, config_file, overrides,
          as_json) -> None:
    """Measure the APS step against a plain network, the Φ update, probe overhead and throughput; with --ops,
    count the operators of the search's pieces and of its real loop per step instead; with --phases, time a
    whole search phase by phase."""
    if phases:
        _bench_phases(config_file, overrides, device, as_json)
        return
    if ops:
        given = ctx.get_parameter_source("batch") is not click.core.ParameterSource.DEFAULT
        _bench_ops(batch if given else 32, as_json)
        return
    resolved = resolve_device(device)
    with tempfile.TemporaryDirectory() as scratch:
        probes = probe_overhead(resolved, Path(scratch))
    report = run_benchmarks(resolved, repeats, batch, probes["probe_overhead"], precision, memory_format)
    report["probe_detail"] = probes
    if as_json:
        echo_json(report)
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


def _bench_phases(config_file: str | None, overrides: tuple[str, ...], device: str, as_json: bool) -> None:
    """``bench --phases``: :func:`sharing_lab.analysis.bench.phases` of the configured search, as JSON or a table."""
    config = resolve(config_file, [*overrides, *([f"device={device}"] if device != "auto" else [])])
    with tempfile.TemporaryDirectory() as scratch:
        report = phases(config, Path(scratch) / "bench")
    if as_json:
        echo_json(report)
        return
    click.echo(f"{report['epochs']} epochs, {report['steps']} weight steps on {report['device']}, "
               f"{report['threads']} thread{'s' if report['threads'] != 1 else ''} in the loop")
    click.echo(f"{'phase':<22}{'seconds':>10}{'share':>9}{'laps':>8}")
    for name, phase in report["phases"].items():
        click.echo(f"{name:<22}{phase['s']:>10.2f}{phase['share']:>9.1%}{phase['laps']:>8}")
    click.echo(f"{'total':<22}{report['total_s']:>10.2f}")


def _bench_ops(batch: int, as_json: bool) -> None:
    """``bench --ops``: the operator counts of :func:`sharing_lab.analysis.bench.ops_report` and of the real loop
    (:func:`sharing_lab.analysis.bench.loop_ops`, the paper preset on generated 32x32 data), as JSON or a table."""
    report = ops_report(batch=batch)
    # the loop's counts do not depend on the batch either: 32 keeps its epochs of generated images short
    loop = resolve("cifar10-resnet20", ["data.name=synthetic", "data.image_size=32", "data.batch_size=32",
                                        "data.reward_batch_size=32", "device=cpu"])
    with tempfile.TemporaryDirectory() as scratch:
        report["ops"].update(loop_ops(loop, Path(scratch) / "ops"))
    if as_json:
        echo_json(report)
        return
    click.echo(f"aten operators per step (CPU, torch {report['torch']}): {report['model']}, widths "
               f"{','.join(map(str, report['widths']))}, {report['granularity']} granularity, {report['scheme']}, "
               f"batch {report['batch']}, mean over {report['archs']} random architectures")
    labels = {"train_step": "supernet train step", "forward": "supernet no-grad forward (reward)",
              "transition": "Eq. 5 over all layers", "controller": "controller, per search step",
              "plain_train_step": "plain network train step, same widths",
              "warmup_step": "the loop, per warm-up step (all of it)", "search_step": "the loop, per search step"}
    click.echo(f"{'':<40}{'dispatched':>12}{'launching':>12}")
    for name, label in labels.items():
        counts = report["ops"][name]
        click.echo(f"{label:<40}{counts['dispatched']:>12}{counts['launching']:>12}")


COMMANDS = (bench,)
