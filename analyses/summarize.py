"""Summarise search runs as a Markdown table (the numbers quoted in the README and figures/README.md).

    python analyses/summarize.py runs/embedded
"""

import json
import sys
from pathlib import Path

import pandas as pd

from sharing_lab import read_table
from sharing_lab.plots import RunSet


def summarize(paths: list[str]) -> pd.DataFrame:
    rows = []
    for run in RunSet.from_paths([Path(p) for p in paths]).runs:
        if run.kind == "retrain" or not (run.path / "summary.json").exists():
            continue
        wide = read_table(run.path, "scalars").pivot_table(index="epoch", columns="name", values="value")
        warmup = run.config.search.warmup_epochs
        search = wide[wide.index >= warmup]
        evals = wide[["val_acc_mean", "val_acc_max", "val_acc_widest"]].dropna()
        exported = json.loads((run.path / "summary.json").read_text())["exported"]
        rows.append({
            "run": run.name, "scheme": run.scheme, "seed": run.config.seed, "tau": run.config.sharing.tau,
            "flops_target": run.config.search.flops_target,
            "widest_final": evals["val_acc_widest"].iloc[-1], "widest_best": evals["val_acc_widest"].max(),
            "mean_final": evals["val_acc_mean"].iloc[-1], "max_final": evals["val_acc_max"].iloc[-1],
            "mean_at_warmup_end": evals.loc[evals.index < warmup, "val_acc_mean"].iloc[-1],
            "cos_align_search": search["cos_align"].mean(), "coupled_norm_search": search["coupled_norm"].mean(),
            "phi_start": wide["phi"].iloc[0], "phi_final": wide["phi"].iloc[-1],
            "entropy_final": search["entropy"].iloc[-1], "exported": exported["widths"],
            "exported_test_acc": exported["test_acc"],
        })
    return pd.DataFrame(rows).sort_values(["scheme", "seed"])


if __name__ == "__main__":
    frame = summarize(sys.argv[1:] or ["runs/embedded"])
    columns = list(frame.columns)
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
