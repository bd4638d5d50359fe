"""A run directory is a closed world (issue 26, the data-loss cases): a resume deletes only the record parts its
checkpoint proves newer than itself, follows no link inside a run (neither a linked table folder nor a linked
lock), refuses a ``config.json`` edited by hand since the checkpoint, and a second resume of a run that finished
while it waited for the lock does nothing. Each case: exit 2, one line, and no byte changed inside the run or
outside it.

Every case works on a copy of one tiny stopped run (``test_reliability_checkpoints.stopped_run``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_reliability import NAME, TINY, _sets, invoke

from sharing_lab.runs import rundir
from sharing_lab.runs.locking import lock, release


def _args(out: Path, *extra: str) -> list[str]:
    return ["run-search", "--out", str(out), "--name", NAME, "--seed", "0", *_sets(*TINY, "search.epochs=2",
                                                                                   "search.warmup_epochs=1"), *extra]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stopped")
    code, err = invoke(*_args(out))
    assert code in (None, 0), err
    run = out / NAME
    (run / "summary.json").unlink()
    return run


@pytest.fixture
def world(stopped_run, tmp_path) -> tuple[Path, Path]:
    """(a copy of the stopped run, a folder outside it with files that must not change)."""
    run = tmp_path / "runs" / NAME
    shutil.copytree(stopped_run, run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("do not touch\n")
    return run, outside


def fingerprint(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (links not followed) and its hash; the lock file's content (a pid) aside."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink():
                found[str(path)] = f"-> {path.readlink()}"
            elif path.is_file() and path.name != rundir.LOCK:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def refused(run: Path, outside: Path, *fragments: str) -> None:
    """``--resume RUN`` is refused in one line holding every fragment, and nothing changed in or outside the run."""
    before = fingerprint(run, outside)
    code, err = invoke("run-search", "--resume", str(run))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, (code, err)
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert fingerprint(run, outside) == before


def test_a_checkpoint_whose_counter_disagrees_with_the_parts_deletes_nothing(world):
    """A checkpoint saying no part was written before it (plain values, loads with weights_only): the parts are
    older than it, so the resume refuses, naming both, instead of deleting every record."""
    run, outside = world
    state = torch.load(run / rundir.CHECKPOINT, weights_only=True)
    state["next_part"] = 0
    torch.save(state, run / rundir.CHECKPOINT)
    refused(run, outside, "record parts were written before it", "older than it")


def test_a_linked_table_folder_is_refused_and_what_it_points_to_is_untouched(world):
    run, outside = world
    shutil.move(run / "scalars", outside / "scalars")
    (run / "scalars").symlink_to(outside / "scalars", target_is_directory=True)
    refused(run, outside, "symbolic link", "scalars")


def test_a_linked_lock_is_refused_and_its_target_is_not_written(world):
    run, outside = world
    (run / rundir.LOCK).unlink(missing_ok=True)
    (run / rundir.LOCK).symlink_to(outside / "precious.txt")
    before = fingerprint(run, outside)
    refused(run, outside, "symbolic link", rundir.LOCK)
    code, err = invoke("retrain", str(run), "--top", "1")  # the case reported: retrain overwrote the target
    assert code == 2 and "symbolic link" in err, err
    assert (outside / "precious.txt").read_text() == "do not touch\n"
    assert fingerprint(run, outside) == before


def test_a_config_edited_by_hand_since_the_checkpoint_is_refused(world):
    run, outside = world
    payload = json.loads((run / rundir.CONFIG).read_text())
    payload["config"]["search"]["lr"] = payload["config"]["search"]["lr"] * 10
    (run / rundir.CONFIG).write_text(json.dumps(payload))
    refused(run, outside, "search.lr", "edited by hand")


def test_a_run_that_finished_while_a_second_resume_waited_is_left_alone(world):
    """The 'already finished' check comes after the lock: a resume that passed the first check while another
    process was finishing the run finds summary.json once it holds the lock, and stops."""
    from sharing_lab.search import launch
    from sharing_lab.search.request import Request

    run, outside = world
    request = Request(config=None, overrides=(), resume=str(run))
    config, run_dir = launch.resolve(request)  # passes: not finished yet
    (run / rundir.SUMMARY).write_text("{}")  # the other process finishes now
    before = fingerprint(run, outside)
    with pytest.raises(Exception, match="already finished"):
        launch._make_run_dir(request, config, run_dir, None, "cpu")
    assert fingerprint(run, outside) == before
    lock(run)  # and the lock was given back
    release(run)
