"""``sharing-lab budget``: a search budget's ratios beside the paper's and its Φ replayed without data
(:mod:`sharing_lab.search.replay`), optionally with the constant τ calibrated by replay."""

from __future__ import annotations

import math

import click

from ..aps.transition import at_rate, transition_of
from ..config import resolve
from ..data.protocol import load_data
from ..errors import InputError
from ..search.replay import budget, calibrate_tau, replay
from ..space.search_space import build_space
from .console import echo_json


def _shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise InputError(f"--shape must be CLASSES,CHANNELS,SIZE (positive integers), got {text!r}")
    return values  # type: ignore[return-value]


@click.command("budget")
@click.option("--config", "config_file", help="TOML configuration file or preset name (default: the embedded search).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Configuration override (repeatable).")
@click.option("--calibrate", is_flag=True,
              help="Also find the constant rate τ (sharing.transition=τ) whose Φ reaches --fraction at --at.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="Share of the way (log Φ) from ordinal to independent that --calibrate aims at.")
@click.option("--at", "at", type=click.FloatRange(0, 1, min_open=True), default=0.6, show_default=True,
              help="Position in the search phase where --calibrate wants it.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1),
              help="Weight steps per epoch (default: from the dataset, which must then be readable).")
@click.option("--shape", help="CLASSES,CHANNELS,SIZE of the data when it is not read (with --steps-per-epoch).")
@click.option("--no-replay", is_flag=True,
              help="The ratios only, without replaying Φ (a paper-scale replay takes hours on a CPU); Φ's point is "
                   "then the schedule's own.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def budget_command(config_file, overrides, calibrate, fraction, at, steps_per_epoch, shape, no_replay,
                   as_json) -> None:
    """The budget of a search in the paper's proportions (warm-up share, controller updates per decision, weight
    lr during the transition, where Φ gets to) and its Φ trajectory, replayed without data (P/Q get no task
    gradient, so the replay is the search's Φ exactly)."""
    for option, value in (("--fraction", fraction), ("--at", at)):
        if not math.isfinite(value):
            raise InputError(f"{option} must be a number in (0, 1], got {value}")
    config = resolve(config_file, overrides)
    dims = _shape(shape)
    if dims is None or steps_per_epoch is None:
        data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size,
                         train_images=config.data.train_images)
        dims = dims or (data.num_classes, data.in_channels, data.image_size)
        steps_per_epoch = steps_per_epoch or data.num_batches("train", config.data.batch_size)
    space = build_space(config, *dims)
    tau = None
    if calibrate:
        tau, trajectory = calibrate_tau(config, space, steps_per_epoch, fraction, at)
        config = at_rate(config, tau)
    elif no_replay:
        trajectory = None
    else:
        trajectory = replay(config, space, steps_per_epoch)
    result = budget(config, space, steps_per_epoch, trajectory)
    result["calibrated_tau"] = tau
    result["steps_per_epoch"] = steps_per_epoch
    result["phi"] = [] if trajectory is None else trajectory.rows.to_dict("records")
    if as_json:
        echo_json(result)
        return
    paper = result["paper"]
    transition = transition_of(config.sharing, space.scheme)
    if tau is not None:
        click.echo(f"calibrated τ = {tau:g}: Φ {fraction:g} of the way (log Φ) at {at:g} of the search phase")
    click.echo(f"{'':38}{'this search':>14}{'paper':>10}   (paper: its CIFAR-10 ResNet-20 search)")
    for key, label in (("warmup_share", "warm-up share of the epochs"),
                       ("controller_updates_per_decision", "controller updates per decision"),
                       ("transition_at_peak_lr", "search phase at the peak weight lr"),
                       ("transition_above_tenth_lr", "search phase at ≥ 1/10 of the peak lr"),
                       ("phi_80_at", "Φ 80% of the way at (search phase)")):
        mine = result[key]
        click.echo(f"{label:38}{'never' if mine is None else f'{mine:.3g}':>14}{paper[key]:>10.3g}")
    if transition is None:
        click.echo(f"Φ: scheme {config.sharing.scheme} does not move P/Q")
        return
    if trajectory is None:
        click.echo(f"Φ ({transition.describe()}): not replayed (--no-replay)")
        return
    click.echo(f"Φ ({transition.describe()}): start {result['phi_start']:.4g}, independent minimum "
               f"{result['phi_floor']:.4g}, end {result['phi_end']:.4g} ({result['progress_end']:.2f} of the way in "
               "log Φ)")


COMMANDS = (budget_command,)
