"""Copy the records of finished runs (what `figures/` and `sharing-lab claims` read) into a directory to commit.

    python analyses/collect_records.py runs/embedded records/embedded

Per finished run (one with ``summary.json``): ``config.json``, ``summary.json``, ``arch.json``, ``summary.png``
and the Parquet parts of every table; no checkpoints, locks or logs. A run already in the destination is
replaced (its records come from the same run directory). Prints the total size.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FILES = ("config.json", "summary.json", "arch.json", "summary.png")


def collect(source: Path, destination: Path) -> int:
    total = 0
    for run in sorted(path for path in source.iterdir() if (path / "summary.json").is_file()):
        target = destination / run.name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
        for part in run.glob("*/part-*.parquet"):
            (target / part.parent.name).mkdir(exist_ok=True)
            shutil.copy2(part, target / part.parent.name / part.name)
        total += sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    return total


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    size = collect(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{size / 1e6:.1f} MB in {sys.argv[2]}")
