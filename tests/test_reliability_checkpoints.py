"""Checkpoints (issue 15): they hold tensors and plain containers only and load with ``weights_only=True``, so a
malicious one runs nothing; a resume never deletes records it cannot replace; a checkpoint that does not fit
``config.json`` is refused in one line.

Refusals run in-process through :func:`sharing_lab.cli.main` on copies of one tiny finished run (two epochs of the
reliability configuration) whose ``summary.json`` is removed, so that ``--resume`` would otherwise go on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_reliability import NAME, TINY, _env, _sets, invoke, snapshot

import sharing_lab
from sharing_lab.config import Config, apply_overrides
from sharing_lab.runs import checkpoints, records, rundir
from sharing_lab.search import checkpointing, loop, session

FIXTURES = Path(__file__).parent / "fixtures"
MALICIOUS = {"zip": FIXTURES / "malicious_checkpoint.pt", "pickle": FIXTURES / "malicious_pickle.pt"}
SHORT = ("search.epochs=2", "search.warmup_epochs=1")


def _args(out: Path, *extra: str) -> list[str]:
    return ["run-search", "--out", str(out), "--name", NAME, "--seed", "0", *_sets(*TINY, *SHORT), *extra]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A tiny run with a checkpoint, a previous checkpoint and record parts; not finished (no summary.json)."""
    out = tmp_path_factory.mktemp("stopped")
    code, err = invoke(*_args(out))
    assert code is None or code == 0, err
    run = out / NAME
    (run / "summary.json").unlink()
    assert (run / "checkpoint.prev.pt").is_file() and records.has_records(run)
    return run


@pytest.fixture
def run_copy(stopped_run, tmp_path) -> Path:
    target = tmp_path / "copy" / NAME
    shutil.copytree(stopped_run, target)
    return target


def _records_and_checkpoints(run: Path) -> dict:
    """Everything of a run but its lock file (which a refused resume may have taken and given back)."""
    return {k: v for k, v in snapshot(run).items() if k != rundir.LOCK}


def _one_error_line(code, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    return lines[0]


# --- what a checkpoint holds --------------------------------------------------------------------------------------
def test_a_default_search_checkpoint_round_trips_with_weights_only(tmp_path):
    """The default search (digits, transitionary, probes on), after a warm-up and a search epoch (so the slice
    offsets are released, the controller and REINFORCE have state): weights_only=True reads back every entry."""
    config = apply_overrides(Config(), ["search.epochs=2", "search.warmup_epochs=1", "device=cpu",
                                        "data.batch_size=256"])  # 4 steps an epoch: the test stays fast
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    search = session.open_search(config, run_dir, log=lambda message: None)
    assert checkpointing.resume(search) is False  # a fresh run: writes the initial checkpoint
    for _ in range(2):
        loop.train_epoch(search)
        search.state.epoch += 1
    checkpointing.checkpoint(search)
    path = run_dir / rundir.CHECKPOINT
    safe = checkpoints.load_file(path)
    full = torch.load(path, map_location="cpu", weights_only=False)
    checkpoints.check_plain(safe)
    leaves, full_leaves = dict(checkpoints._walk(safe, "")), dict(checkpoints._walk(full, ""))
    assert leaves.keys() == full_leaves.keys() and len(leaves) > 100
    for key, value in leaves.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, full_leaves[key]), key
        else:
            assert value == full_leaves[key] or (value != value and full_leaves[key] != full_leaves[key]), key
    assert safe["epoch"] == 2 and safe["config"]["sharing"]["scheme"] == "transitionary"
    fresh = session.open_search(config, run_dir, log=lambda message: None)
    fresh.state.load_state_dict(safe)  # and it loads into a new search
    assert fresh.state.step == search.state.step


def test_save_checkpoint_refuses_objects_that_need_a_pickle(tmp_path):
    with pytest.raises(rundir.InputError, match=r"probes\[0\]\.thing is a object"):
        checkpoints.save_checkpoint(tmp_path, {"epoch": 0, "probes": [{"thing": object()}]})
    assert not (tmp_path / rundir.CHECKPOINT).exists()


# --- a malicious checkpoint ---------------------------------------------------------------------------------------
def test_the_malicious_fixture_would_run_code_if_unpickled(tmp_path):
    """The positive control: loaded the old way (weights_only=False) the fixture does run its command."""
    marker = tmp_path / "marker"
    code = f"import torch; torch.load({str(MALICIOUS['zip'])!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env=_env(SL_MARKER=str(marker)), check=True, timeout=120)
    assert marker.exists()


@pytest.mark.parametrize("kind", list(MALICIOUS))
@pytest.mark.parametrize("command", ["resume", "beam"])
def test_a_malicious_checkpoint_runs_nothing(command, kind, run_copy, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("SL_MARKER", str(marker))
    for name in (rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT):
        shutil.copy(MALICIOUS[kind], run_copy / name)
    before = _records_and_checkpoints(run_copy)
    args = ["run-search", "--resume", run_copy] if command == "resume" else ["beam", run_copy]
    line = _one_error_line(*invoke(*args))
    assert "could run code" in line and "no readable checkpoint" in line, line
    assert not marker.exists()
    assert _records_and_checkpoints(run_copy) == before


def test_a_malicious_latest_checkpoint_falls_back_on_the_previous_one(run_copy, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("SL_MARKER", str(marker))
    shutil.copy(MALICIOUS["zip"], run_copy / rundir.CHECKPOINT)
    code, err = invoke("beam", run_copy, "--top", "2")
    assert code in (None, 0), err
    assert "warning:" in err and "could run code" in err and not marker.exists()


# --- resume never deletes what it cannot replace ------------------------------------------------------------------
def test_resume_with_no_readable_checkpoint_refuses_and_touches_nothing(run_copy):
    for name in (rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT):
        (run_copy / name).write_bytes(b"")
    before = _records_and_checkpoints(run_copy)
    line = _one_error_line(*invoke("run-search", "--resume", run_copy))
    assert "no readable checkpoint" in line and "checkpoint.pt" in line and "checkpoint.prev.pt" in line, line
    assert _records_and_checkpoints(run_copy) == before
    line = _one_error_line(*invoke("beam", run_copy))
    assert "no readable checkpoint" in line


def test_resume_with_records_but_no_checkpoint_refuses_and_touches_nothing(run_copy):
    for name in (rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT):
        (run_copy / name).unlink()
    before = _records_and_checkpoints(run_copy)
    line = _one_error_line(*invoke("run-search", "--resume", run_copy))
    assert "has records but no checkpoint" in line, line
    assert _records_and_checkpoints(run_copy) == before


def test_a_run_killed_before_its_first_checkpoint_starts_from_epoch_0(tmp_path):
    config = apply_overrides(Config(), [*TINY, *SHORT, "seed=0"])
    run = rundir.create(tmp_path, NAME, config, {"seed": 0})  # config.json only, as a kill right after it leaves
    code, err = invoke("run-search", "--resume", run)
    assert code in (None, 0), err
    assert (run / "summary.json").is_file() and checkpoints.load_file(run / rundir.CHECKPOINT)["epoch"] == 2


# --- config.json edited by hand -----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["resume", "beam"])
def test_a_config_that_does_not_fit_the_checkpoint_is_one_line(command, run_copy):
    path = run_copy / rundir.CONFIG
    payload = json.loads(path.read_text())
    payload["config"]["model"]["widths"] = [2, 4, 8]
    path.write_text(json.dumps(payload))
    before = _records_and_checkpoints(run_copy)
    args = ["run-search", "--resume", run_copy] if command == "resume" else ["beam", run_copy]
    line = _one_error_line(*invoke(*args))
    assert "does not fit" in line and "model.widths" in line and "edited by hand" in line, line
    assert _records_and_checkpoints(run_copy) == before


def test_the_package_has_one_torch_load():
    """Every checkpoint read goes through checkpoints.load_file (weights_only=True)."""
    package = Path(sharing_lab.__file__).parent
    calls = {p.relative_to(package).as_posix(): len(re.findall(r"(?<!`)torch\.load\(", p.read_text()))
             for p in package.rglob("*.py")}  # calls, not ``torch.load(...)`` in docstrings
    assert {k: v for k, v in calls.items() if v} == {"runs/checkpoints.py": 1}
    assert "weights_only=True" in (package / "runs" / "checkpoints.py").read_text()
    assert os.path.getsize(MALICIOUS["zip"]) > 0
