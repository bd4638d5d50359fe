"""The end of a search: beam search for the top-N architectures, their scores, the export of the chosen one (paper
Section 5.3: the one closest to the FLOPs target, else the likeliest) and ``summary.json`` (rank 0 only)."""

from __future__ import annotations

from ..aps.phi_schedule import layer_bounds, log_progress
from ..config import Config
from ..fileio import atomic_write_json
from ..runs import rundir
from .controller import beam_search
from .evaluation import arch_row
from .export import choose, write_export
from .replay import budget
from .view import RunFacts, SearchView


def finish(view: SearchView, facts: RunFacts) -> dict:
    """Beam search for the top-N, score them, export the chosen one, write ``summary.json``; returns the summary."""
    settings, truth = view.settings, view.truth
    top = beam_search(view.controller, settings.beam_top, view.flops_left)
    archs = [arch for arch, _ in top]
    val, test = view.score.many(archs), view.score.many(archs, "test")
    rows = [arch_row(view, arch, "beam", val[rank], log_prob=log_prob, rank=rank, test_acc=test[rank])
            for rank, (arch, log_prob) in enumerate(top)]
    if truth is not None:
        for row in rows:
            row.update(gt_rank=truth.rank(row["widths"]), gt_acc=truth.accuracy(row["widths"]),
                       gt_regret=truth.regret(row["widths"]))
    view.recorder.rows("archs", rows, step=False)
    chosen = choose(rows, settings.flops_target)
    if truth is not None:
        view.recorder.scalars({"gt_regret": chosen["gt_regret"], "gt_rank": chosen["gt_rank"]})
    view.recorder.writer.flush()
    data = facts.config.data
    export_path = write_export(facts.run_dir, view.space.layout, chosen,
                               {"name": data.name, "dir": data.dir, "image_size": data.image_size})
    summary = {
        "run": facts.run_dir.name, "epochs": settings.epochs, "steps": facts.steps,
        "steps_per_epoch": view.steps_per_epoch,
        "exported": {k: chosen[k] for k in ("widths", "macs", "acc", "test_acc", "log_prob")},
        "macs_range": list(view.space.macs_range()), "flops_target": settings.flops_target,
        "final_phi": float(sum(view.supernet.phi_per_layer())), "export_path": str(export_path),
        "processes": facts.processes, **facts.runtime,
    }
    summary["budget"] = budget_summary(view, facts.config)
    view.clock.lap("finish")
    summary["timings"] = view.clock.breakdown()
    if truth is not None:
        summary["groundtruth"] = {"space": truth.space.name, "rank": chosen["gt_rank"], "acc": chosen["gt_acc"],
                                  "regret_points": chosen["gt_regret"], "architectures": len(truth.table),
                                  "oracle": truth.best(1)[0], "oracle_acc": truth.accuracy(truth.best(1)[0])}
    atomic_write_json(facts.run_dir / rundir.SUMMARY, summary)
    return summary


def budget_summary(view: SearchView, config: Config) -> dict:
    """The search's ratios beside the paper's (:func:`sharing_lab.search.replay.budget`, without a replay) and where
    Φ ended: the movable layers' Φ against their ordinal start and independent minimum, and the share of the way
    in log Φ."""
    ratios = budget(config, view.space, view.steps_per_epoch, None)
    start, floor = layer_bounds(view.supernet)
    phi = view.supernet.movable_phi()
    moving = bool(view.supernet.movable_layers())
    ratios.update(phi_start=float(start.sum()), phi_floor=float(floor.sum()), phi_end=phi,
                  progress_end=log_progress(phi, float(start.sum()), float(floor.sum())) if moving else None)
    return ratios
