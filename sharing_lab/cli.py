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
