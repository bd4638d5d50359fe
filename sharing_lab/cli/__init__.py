"""The ``sharing-lab`` command line (DESIGN §4): ``sharing_lab.cli:main``, also ``python -m sharing_lab.cli``.
Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import sys

import click

from ..errors import InputError, describe_os_error, describe_out_of_memory, is_out_of_memory
from ..plugins import load_entry_points, load_plugin
from .bench import COMMANDS as BENCH_COMMANDS
from .budget import COMMANDS as BUDGET_COMMANDS
from .claims import COMMANDS as CLAIM_COMMANDS
from .console import fail
from .groundtruth import COMMANDS as GROUNDTRUTH_COMMANDS
from .run import COMMANDS as RUN_COMMANDS
from .sweeps import COMMANDS as SWEEP_COMMANDS
from .tools import COMMANDS as TOOL_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sharing-lab")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Import MODULE (a module name or a .py file) first: its models, datasets, schemes, probes.")
def cli(plugins) -> None:
    """Affine parameter sharing (APS) for neural channel number search."""
    load_entry_points()
    for plugin in plugins:
        load_plugin(plugin)


for _command in (*RUN_COMMANDS, *TOOL_COMMANDS, *GROUNDTRUTH_COMMANDS, *CLAIM_COMMANDS, *SWEEP_COMMANDS,
                 *BUDGET_COMMANDS, *BENCH_COMMANDS):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning bad input, OS errors and memory exhaustion into one line and
    exit status 2."""
    try:
        code = cli.main(args=argv, prog_name="sharing-lab", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help())
        sys.exit(0)
    except click.ClickException as error:
        fail(error.format_message())
    except click.exceptions.Abort:
        fail("aborted", 130)
    except InputError as error:
        fail(str(error))
    except OSError as error:  # read-only directory, full disk, name too long: one line naming the path
        fail(describe_os_error(error))
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        fail(describe_out_of_memory(error))
    sys.exit(code if isinstance(code, int) else 0)
