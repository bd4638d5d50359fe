"""``sharing-lab bench`` as a user runs it (issue 6): one JSON object with the documented keys, on the CPU.

Only the shape and sanity of the report are tested; the numbers themselves are measured by hand
(docs/explanation/measurements.md).
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from sharing_lab.cli import main


def _bench(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["bench", "--device", "cpu", "--repeats", "3", "--batch", "2", "--json", *args])
    assert exit_info.value.code == 0
    return json.loads(out.getvalue())


def test_bench_json_reports_every_documented_number():
    report = _bench()
    for key in ("step_ratio", "probe_overhead", "images_per_s", "device", "step_ratio_einsum", "phi_update_ms",
                "controller_step_ms", "projected_paper_resnet20_search_h"):
        assert key in report, key
    assert report["device"] == "cpu" and (report["precision"], report["memory_format"]) == ("fp32", "contiguous")
    assert 0 < report["step_ratio"] < 10 and 0 < report["step_ratio_einsum"] < 10
    assert 0 < report["probe_overhead"] < 1 and report["images_per_s"] > 0
    assert report["probe_detail"]["probe_every_epochs"] == 5


def test_bench_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--device", "cpu", "--precision", "fp8"])
    assert exit_info.value.code == 2
    assert "fp8" in capsys.readouterr().err


def _bench_ops(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["bench", "--ops", "--batch", "2", *args])
    assert exit_info.value.code == 0
    return out.getvalue()


def test_bench_ops_json_prints_the_counts_of_every_piece():
    """``bench --ops --json`` (issue 14): the operator counts per step, paper preset; the numbers themselves are
    pinned in tests/test_opcount.py."""
    report = json.loads(_bench_ops("--json"))
    assert set(report["ops"]) == {"train_step", "forward", "transition", "controller", "plain_train_step",
                                  "warmup_step", "search_step"}
    for counts in report["ops"].values():
        assert set(counts) == {"dispatched", "launching"} and 0 < counts["launching"] <= counts["dispatched"]
    assert (report["model"], report["batch"], report["widths"]) == ("resnet20", 2, [16, 32, 64, 96])


def test_bench_ops_prints_a_table():
    text = _bench_ops()
    assert "dispatched" in text and "launching" in text
    assert "supernet train step" in text and "controller, per search step" in text


def test_bench_ops_counts_the_real_loop_above_its_pieces():
    """The loop does more than its pieces (decisions, the guard, the reward, the transition, the controller):
    a search step counts more operators than a warm-up step, and both more than the weight step alone."""
    ops = json.loads(_bench_ops("--json"))["ops"]
    assert ops["search_step"]["dispatched"] > ops["warmup_step"]["dispatched"] > ops["train_step"]["dispatched"]


def test_bench_phases_times_a_whole_search_phase_by_phase():
    from test_search_cli import TINY

    out = io.StringIO()
    sets = [part for text in [*TINY, "search.epochs=2", "search.warmup_epochs=1", "search.eval_every=1"]
            for part in ("--set", text)]
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["bench", "--phases", *sets, "--json"])
    assert exit_info.value.code == 0
    report = json.loads(out.getvalue())
    phases = report["phases"]
    assert {"start", "weight step", "controller", "reward forward", "evaluation", "checkpoints", "finish",
            "summary figure"} <= set(phases)
    assert sum(p["s"] for p in phases.values()) == pytest.approx(report["total_s"])
    assert sum(p["share"] for p in phases.values()) == pytest.approx(1.0, abs=1e-3)
    assert phases["weight step"]["laps"] >= report["steps"] and report["threads"] == 1
