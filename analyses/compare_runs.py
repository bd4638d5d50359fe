"""Compare the records of two runs table by table, row for row (the redesign's before/after equality check).

    python analyses/compare_runs.py RUN_A RUN_B [--ignore-scalar NAME]… [--rtol 0]

Columns both runs have are compared (the ``run`` column aside); scalars named with ``--ignore-scalar`` (new
metrics one side does not record) are dropped first. Exit status 0 when every shared table is equal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharing_lab.runs.sweeps import read_table  # noqa: E402

TABLES = ("scalars", "probs", "archs", "layers", "pairs")


def compare(a: Path, b: Path, ignore: set[str], rtol: float) -> list[str]:
    problems = []
    for table in TABLES:
        left, right = read_table(a, table), read_table(b, table)
        if table == "scalars":
            left, right = left[~left["name"].isin(ignore)], right[~right["name"].isin(ignore)]
        columns = [c for c in left.columns if c in right.columns and c != "run"]
        left, right = left[columns].reset_index(drop=True), right[columns].reset_index(drop=True)
        if len(left) != len(right):
            problems.append(f"{table}: {len(left)} rows against {len(right)}")
            continue
        for column in columns:
            x, y = left[column].to_numpy(), right[column].to_numpy()
            if x.dtype.kind == "f" or y.dtype.kind == "f":
                same = np.allclose(x.astype(float), y.astype(float), rtol=rtol, atol=0.0, equal_nan=True)
            else:
                same = bool((x == y).all())
            if not same:
                problems.append(f"{table}.{column} differs")
        print(f"{table}: {len(left)} rows, {len(columns)} shared columns")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--ignore-scalar", action="append", default=[])
    parser.add_argument("--rtol", type=float, default=0.0)
    args = parser.parse_args()
    problems = compare(args.a, args.b, set(args.ignore_scalar), args.rtol)
    for problem in problems:
        print(problem)
    print("equal" if not problems else "DIFFERENT")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
