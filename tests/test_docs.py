"""The documentation site (issue 25): it builds with warnings as errors (a broken link or a missing page fails), its
command-line reference is generated from the click definitions, and every ``sharing-lab COMMAND --option`` written
in the hand-written pages and the README exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sharing_lab.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _commands() -> dict[str, click.Command]:
    """Every command by its path ("run-search", "groundtruth import")."""
    out: dict[str, click.Command] = {}
    for name, command in cli.commands.items():
        out[name] = command
        if isinstance(command, click.Group):
            out.update({f"{name} {sub}": child for sub, child in command.commands.items()})
    return out


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help", "-h"}


def test_every_documented_option_exists():
    commands, missing = _commands(), []
    global_options = _options(cli)
    for page in PAGES:
        if "figures" in page.parts:
            continue
        for line in page.read_text().splitlines():
            for match in re.finditer(r"sharing-lab((?: \[?--plugin[^ ]*(?: MODULE\]…)?)?) ([a-z-]+)(?: ([a-z-]+))?"
                                     r"([^`|;#&]*)", line):
                first, second, rest = match.group(2), match.group(3), match.group(4)
                path = f"{first} {second}" if f"{first} {second}" in commands else first
                if path not in commands:
                    continue
                known = _options(commands[path]) | global_options
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                    if option not in known:
                        missing.append(f"{page.relative_to(ROOT)}: sharing-lab {path} {option}")
    assert not missing, "options the documentation names that the command does not have:\n" + "\n".join(missing)


def test_the_site_builds_strictly_with_a_generated_cli_reference(tmp_path):
    pytest.importorskip("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for path, command in _commands().items():
        assert path.split()[-1] in reference, path
        for option in _options(command) - {"--help", "-h"}:
            if option.startswith("--"):
                assert option in reference, (path, option)
    tables = (tmp_path / "site" / "reference" / "tables" / "index.html").read_text()
    assert "coupled_norm" in tables and "supernet_acc" in tables
