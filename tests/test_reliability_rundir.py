"""Run directories (issue 15): one-component run names, the write lock, ``export --rank`` into a new file, and
OS errors (read-only directory, full disk, name too long) and memory exhaustion as one line with exit status 2.

A read-only directory is ``chmod 0o555``; as root, which may write there anyway, the OS's refusal is imitated
(``os.mkdir`` and ``tempfile.mkstemp`` raise EACCES inside that directory). A full disk is imitated by a record
write that raises ENOSPC, through the real :func:`sharing_lab.fileio.atomic_write`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from test_reliability import NAME, TINY, _env, _sets, invoke

import sharing_lab
from sharing_lab import fileio
from sharing_lab.cli import run as cli_run
from sharing_lab.config import Config, apply_overrides
from sharing_lab.jobs.recipes import SCALES, recipes
from sharing_lab.runs import checkpoints, locking, records, rundir
from sharing_lab.search import memory
from sharing_lab.search.export import load_export, write_export
from sharing_lab.search.supernet import Supernet
from sharing_lab.space.search_space import build_space

SHORT = ("search.epochs=3", "search.warmup_epochs=1")
HOLDER = ("import sys, time; from sharing_lab.runs import locking; locking.lock(sys.argv[1]); "
          "print('locked', flush=True); "
          "time.sleep(300)")


def _one_error_line(code, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    return lines[0]


def _config(*extra: str) -> Config:
    return apply_overrides(Config(), [*TINY, *SHORT, *extra])


# --- names --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["run", "oit-transitionary-s0", "tau-1e-05", "résumé", "a b", "x" * 100])
def test_plain_names_are_accepted(name):
    assert rundir.check_name(name) == name


@pytest.mark.parametrize("name", ["", " ", "..", ".", ".x", "a/b", "../x", "/abs", "a\\b", "x" * 101, "a\x00b",
                                  "new\nline", " padded"])
def test_names_that_are_not_one_plain_component_are_refused(name):
    with pytest.raises(rundir.InputError):
        rundir.check_name(name)


def test_every_recipe_job_name_is_a_valid_run_name():
    for scale in SCALES:
        for recipe in recipes(scale).values():
            for job in recipe.jobs:
                rundir.check_name(job.name)


def test_create_refuses_a_bad_name_and_makes_nothing(tmp_path):
    with pytest.raises(rundir.InputError, match="path separator"):
        rundir.create(tmp_path / "out", "../escaped", Config(), {})
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


# --- the lock -----------------------------------------------------------------------------------------------------
def test_the_lock_is_reentrant_and_holds_the_pid(tmp_path):
    locking.lock(tmp_path)
    locking.lock(tmp_path)
    assert (tmp_path / rundir.LOCK).read_text().strip() == str(os.getpid())
    locking.release(tmp_path)
    locking.release(tmp_path)
    locking.release(tmp_path)  # one too many: nothing


def test_a_second_writer_is_refused_naming_the_holder_and_a_kill_leaves_no_stale_lock(tmp_path):
    run = rundir.create(tmp_path, NAME, _config(), {"seed": 0})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in (["run-search", "--resume", run], ["retrain", run]):
            line = _one_error_line(*invoke(*args))
            assert f"being written by process {holder.pid}" in line, line
        assert not checkpoints.checkpoint_files(run) and not records.has_records(run)  # the refused resume wrote none
    finally:
        holder.kill()
        holder.wait(timeout=60)
        holder.stdout.close()
    with locking.locked(run):  # the OS dropped the killed holder's lock
        assert (run / rundir.LOCK).read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_resume_of_a_running_search_is_refused(tmp_path):
    from test_reliability import Background, epoch_at_least, search_args

    run = tmp_path / NAME
    with Background(tmp_path, *search_args(tmp_path)) as search:
        search.wait_until(epoch_at_least(run, 1))
        line = _one_error_line(*invoke("run-search", "--resume", run))
        assert f"being written by process {search.proc.pid}" in line, line
        search.kill()
    with locking.locked(run):
        pass


# --- export -------------------------------------------------------------------------------------------------------
@pytest.fixture
def exported_run(tmp_path) -> Path:
    """A run directory with config.json, beam rows and arch.json (with its data block), made without a search."""
    config = _config()
    run = rundir.create(tmp_path, NAME, config, {"seed": 0})
    layout = build_space(config, 10, 3, 8).layout
    rows = [{"epoch": 3, "source": "beam", "widths": widths, "macs": 1, "log_prob": -1.0 - rank, "acc": 0.5,
             "rank": rank, "test_acc": 0.25} for rank, widths in enumerate(["4,4,4", "2,4,4", "2,2,4"])]
    writer = records.RecordWriter(run, run.name)
    writer.add("archs", rows)
    writer.flush()
    write_export(run, layout, rows[0], {"name": "synthetic", "dir": None, "image_size": None})
    return run


def test_export_rank_writes_a_new_file_and_keeps_every_field(exported_run):
    arch = exported_run / "arch.json"
    before = (arch.read_bytes(), arch.stat().st_mtime_ns)
    code, err = invoke("export", exported_run, "--rank", "1")
    assert code == 0, err
    assert (arch.read_bytes(), arch.stat().st_mtime_ns) == before  # the run's own export is left alone
    original, ranked = json.loads(arch.read_text()), json.loads((exported_run / "arch-rank-1.json").read_text())
    assert set(original) <= set(ranked) and ranked["data"] == original["data"]
    assert ranked["widths"] == [2, 4, 4] and ranked["rank"] == 1 and ranked["log_prob"] == -2.0
    load_export(exported_run / "arch-rank-1.json")
    line = _one_error_line(*invoke("export", exported_run, "--rank", "1"))
    assert "already exists" in line
    code, err = invoke("export", exported_run)  # the pick: reported, arch.json not rewritten
    assert code == 0 and (arch.read_bytes(), arch.stat().st_mtime_ns) == before, err


# --- OS errors ----------------------------------------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A directory nobody may write into (imitated for root, whom chmod does not stop)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    if os.geteuid() == 0:
        inside = str(directory)

        def refuse(path) -> None:
            if str(path).startswith(inside):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        real_mkdir, real_mkstemp = os.mkdir, tempfile.mkstemp
        monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: (refuse(path), real_mkdir(path, *a, **k))[1])
        monkeypatch.setattr(tempfile, "mkstemp",
                            lambda *a, dir=None, **k: (refuse(dir or ""), real_mkstemp(*a, dir=dir, **k))[1])
    yield directory
    directory.chmod(stat.S_IRWXU)


def test_run_search_into_a_read_only_out_is_one_line(read_only):
    line = _one_error_line(*invoke("run-search", "--out", read_only, "--name", NAME, *_sets(*TINY)))
    assert "cannot create run directory" in line and "Permission denied" in line and str(read_only) in line
    assert list(read_only.iterdir()) == []


def test_export_into_a_read_only_directory_is_one_line(exported_run, read_only):
    target = read_only / "rank1.json"
    line = _one_error_line(*invoke("export", exported_run, "--rank", "1", "--out", target))
    assert line == f"error: Permission denied: {target}"
    assert list(read_only.iterdir()) == []


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    out = tmp_path / ("o" * 300)
    line = _one_error_line(*invoke("run-search", "--out", out, "--name", NAME, *_sets(*TINY)))
    assert "File name too long" in line and "o" * 300 in line
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_the_parts_written_before_stay_readable(tmp_path, monkeypatch):
    real = fileio.atomic_write

    def disk_full_at_part_1(path, write):
        def full(tmp: str) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        real(path, full if "part-000001" in str(path) else write)

    monkeypatch.setattr(records, "atomic_write", disk_full_at_part_1)
    code, err = invoke("run-search", "--out", tmp_path, "--name", NAME, "--seed", "0",
                       *_sets(*TINY, "search.epochs=2", "search.warmup_epochs=1"))
    lines = err.strip().splitlines()  # the epochs' log lines, then the one error line
    assert code == 2 and "Traceback" not in err and [x for x in lines if x.startswith("error:")] == lines[-1:], err
    line, run = lines[-1], tmp_path / NAME
    assert line.startswith("error: No space left on device: ") and line.endswith("part-000001.parquet"), line
    assert str(run) in line
    assert not list(run.rglob("*.tmp"))
    for table in ("scalars", "probs", "archs"):
        parts = sorted((run / table).glob("part-*.parquet"))
        assert [p.name for p in parts] == ["part-000000.parquet"], table
        assert len(sharing_lab.read_table(run, table)) == sum(pq.read_table(p).num_rows for p in parts) > 0
    monkeypatch.setattr(records, "atomic_write", real)  # space freed: the run resumes to its end
    code, err = invoke("run-search", "--resume", run)
    assert code == 0 and "at epoch 2" in err and (run / "summary.json").is_file(), err


# --- memory -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [[], ["sharing.scheme=independent", "model.granularity=conv"],
                                       ["model.bn=per_candidate_affine"], ["model.name=resnet18",
                                                                           "model.widths=[8,16]"]])
def test_the_predicted_supernet_size_is_exact(overrides):
    config = apply_overrides(Config(), overrides)
    space = build_space(config, 10, 3, 32)
    net = Supernet(space, 0, config.model.bn)
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    assert memory.supernet_size(space.layout, config.model.bn == "per_candidate_affine") == (params, buffers)


def test_the_memory_limit_can_be_raised():
    huge = apply_overrides(Config(), ["model.widths=[100000]"])
    with pytest.raises(rundir.InputError, match="needs about .* GB"):
        memory.check_memory(huge)
    memory.check_memory(apply_overrides(huge, ["runtime.max_supernet_gb=1e9"]))  # nothing is allocated


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB"),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes."),
    MemoryError(),
], ids=["cuda", "cpu", "python"])
def test_memory_exhaustion_is_one_line(error, tmp_path, monkeypatch):
    def start(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli_run, "start", start)
    line = _one_error_line(*invoke("run-search", "--out", tmp_path, *_sets(*TINY)))
    assert line.startswith("error: out of memory") and "model.widths" in line, line


def test_other_runtime_errors_still_raise(tmp_path, monkeypatch):
    def start(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_run, "start", start)
    with pytest.raises(RuntimeError, match="a bug"):
        invoke("run-search", "--out", tmp_path, *_sets(*TINY))

