"""Reliability of a search run (DESIGN §5 and §7): reproducibility, SIGKILL at any moment then ``--resume``,
SIGTERM/SIGINT, a corrupt checkpoint, divergence, and (section 6) a table of bad inputs, each one line in
``BAD_INPUTS``: one error line, exit status 2, nothing made. Checkpoint safety, run directories (names, locks,
export, OS errors, memory) and divergence detection have their own files, ``test_reliability_*.py``.

Every run goes through the real command line in a subprocess: a transitionary ResNet-20 search with candidates
{2, 4}, one decision per stage, on 256 synthetic 3×8×8 images, 6 epochs (2 warm-up), evaluated, flushed and
checkpointed at every epoch. "Equal" means: every table (scalars, probs, archs, layers, pairs) holds the same rows as
the uninterrupted run's (a multiset of rows, exact float equality, same columns and dtypes; the part files may be
numbered differently), and the exported architecture and summary are the same.

Kills come from two sides:
* from outside (``Popen.kill``, SIGKILL) once the run reaches a point seen from its files: the real thing, but a
  kill "during a record flush" can only be aimed at, not guaranteed (the window is a few milliseconds);
* from inside, deterministically: ``KILLER`` runs the same CLI with ``fileio.atomic_write`` wrapped so that the
  process SIGKILLs itself at the N-th write of a chosen file, before or after its rename. This hits the windows that
  matter exactly: a part's temporary file written but not renamed, a flush half done, the checkpoint rotated to
  ``checkpoint.prev.pt`` but the new one not yet in place, the export written but not the summary.

Subprocesses get ``OMP_NUM_THREADS=2`` (never 1: torch 2.13 CPU crashes with one thread on these nets) and
``OMP_WAIT_POLICY=PASSIVE``: on a loaded 2-core machine libgomp's spin-waiting made one tiny run take 93 s instead of
12-18 s; the wait policy does not change any result. ``--set`` overrides beyond the brief's tiny configuration only
shrink batch and probe sizes. Every subprocess has a timeout, so no test can hang.

The default selection (``pytest -m "not slow"``) keeps one uninterrupted run, one kill/resume case (with the resume
refusals), SIGTERM and divergence; the other kill points, the corrupt checkpoints, SIGINT, reproducibility and the
best-effort external kills are ``slow``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import sharing_lab
from sharing_lab.cli import main
from sharing_lab.runs.checkpoints import load_file
from sharing_lab.runs.rundir import read_config

NAME = "run"  # every run has this name (in its own --out), so whole rows, `run` included, can be compared
EPOCHS, WARMUP = 6, 2
TINY = [
    "data.name=synthetic", "model.widths=[2,4]", "model.granularity=stage", f"search.epochs={EPOCHS}",
    f"search.warmup_epochs={WARMUP}", "search.eval_every=1", "search.eval_archs=2", "search.beam_top=2",
    "probes.every_epochs=1",
    "device=cpu",  # exact resume is a CPU contract (DESIGN §7): cuDNN's kernels are not bitwise deterministic
    # smaller batches and probes: same code paths, a faster run
    "data.batch_size=64", "data.reward_batch_size=32", "data.calibration_images=64", "data.eval_batch_size=128",
    "probes.align_archs=2", "probes.probe_batch=32", "search.prob_samples=4",
]
TABLES = ("scalars", "probs", "archs", "layers", "pairs")
TIMEOUT = 300  # seconds per subprocess; one whole run took 12-35 s on a loaded 2-core machine
DIVERGING_LR = "1e30"  # the loss is NaN at the third step (epoch 0, step 2) on synthetic data, seeds 0 and 1

_SCRIPT = Path(sys.executable).with_name("sharing-lab")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "sharing_lab.cli"]

# The CLI with a fault injected: SIGKILL itself at the SL_KILL_NTH-th atomic write of a file whose path matches the
# regular expression SL_KILL_AT, "before" its rename (the temporary file is complete, the rename never happens) or
# "after" it. Every atomic write of the package goes through fileio.atomic_write (the modules that import it by name,
# records and checkpoints among them, have their references replaced too).
KILLER = r"""
import os, re, signal, sys
from pathlib import Path
from sharing_lab import cli
from sharing_lab import fileio

PATTERN = re.compile(os.environ["SL_KILL_AT"])
PHASE, NTH = os.environ["SL_KILL_PHASE"], int(os.environ["SL_KILL_NTH"])
real = fileio.atomic_write
seen = 0

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def atomic_write(path, write):
    global seen
    if PATTERN.search(Path(path).as_posix()):
        seen += 1
        if seen == NTH:
            if PHASE == "after":
                real(path, write)
                die()
            def write_and_die(tmp):
                write(tmp)
                die()
            real(path, write_and_die)
    real(path, write)

for module in list(sys.modules.values()):  # cli imported every module of the package
    if getattr(module, "__name__", "").startswith("sharing_lab") and getattr(module, "atomic_write", None) is real:
        module.atomic_write = atomic_write
cli.main()
"""


# --- helpers ------------------------------------------------------------------------------------------------------
def _sets(*overrides: str) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # warnings shown as by default
    env.update(OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE", **extra)
    return env


def search_args(out: Path, *extra: str) -> list[str]:
    return ["run-search", "--out", str(out), "--name", NAME, "--seed", "0", *_sets(*TINY), *extra]


def cli(*args: str, kill: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess:
    """``sharing-lab ARGS`` in a subprocess; ``kill=(path regex, "before"|"after", n)`` injects a SIGKILL."""
    if kill is None:
        command, env = [*CLI, *args], _env()
    else:
        pattern, phase, nth = kill
        command = [sys.executable, "-c", KILLER, *args]
        env = _env(SL_KILL_AT=pattern, SL_KILL_PHASE=phase, SL_KILL_NTH=str(nth))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def describe(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def assert_exit(proc, code: int) -> None:
    assert proc.returncode == code, describe(proc)


def resume(run: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = cli("run-search", "--resume", str(run), *extra)
    assert_exit(proc, 0)
    assert "Traceback" not in proc.stderr
    return proc


def checkpoint_epoch(run: Path, name: str = "checkpoint.pt") -> int | None:
    """The epoch stored in a checkpoint (epochs done), None while it is absent or being replaced."""
    try:
        return int(load_file(run / name)["epoch"])
    except Exception:  # noqa: BLE001 - absent, or caught mid-rename: not there yet
        return None


class Background:
    """A CLI search in a subprocess, its output in files (no pipe to fill up), killed on exit whatever happens."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.stdout = open(self.log_dir / "stdout", "w")  # closed in __exit__
        self.stderr = open(self.log_dir / "stderr", "w")
        self.proc = subprocess.Popen([*CLI, *args], stdout=self.stdout, stderr=self.stderr, env=_env(),
                                     start_new_session=True)
        self.deadline = time.monotonic() + TIMEOUT

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self.stdout.close()
        self.stderr.close()

    def output(self) -> str:
        self.stdout.flush()
        self.stderr.flush()
        return (f"stdout:\n{(self.log_dir / 'stdout').read_text()}\n"
                f"stderr:\n{(self.log_dir / 'stderr').read_text()}")

    def wait_until(self, condition, interval: float = 0.02) -> None:
        """Poll ``condition()`` until true; fail if the process ends first or the deadline passes."""
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the search ended (exit {self.proc.returncode}) before the point to stop it at\n"
                            f"{self.output()}")
            if time.monotonic() > self.deadline:
                pytest.fail(f"timed out waiting for the search\n{self.output()}")
            time.sleep(interval)

    def kill(self) -> None:
        self.proc.kill()
        assert self.proc.wait(timeout=60) == -signal.SIGKILL, self.output()

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        self.stderr.flush()
        return code, (self.log_dir / "stderr").read_text()


def epoch_at_least(run: Path, epoch: int):
    """A poll condition: the checkpoint holds at least ``epoch`` finished epochs (read only when it changes)."""
    seen = {"mtime": None, "epoch": None}

    def condition() -> bool:
        try:
            mtime = (run / "checkpoint.pt").stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime != seen["mtime"]:
            seen["epoch"], seen["mtime"] = checkpoint_epoch(run), mtime
        return seen["epoch"] is not None and seen["epoch"] >= epoch

    condition.seen = seen
    return condition


def _rows(frame: pd.DataFrame) -> collections.Counter:
    return collections.Counter(tuple(None if pd.isna(v) else v for v in row)
                               for row in frame.itertuples(index=False, name=None))


def assert_same_tables(expected_run: Path, run: Path) -> None:
    """Every table of ``run`` holds exactly the rows of ``expected_run``'s: none missing, none duplicated."""
    problems = []
    for table in TABLES:
        expected, actual = sharing_lab.read_table(expected_run, table), sharing_lab.read_table(run, table)
        assert len(expected) > 0, (expected_run, table)
        assert (actual["run"] == run.name).all(), table
        # the table directory read without sharing_lab (stray temporary files must not confuse readers)
        assert len(pd.read_parquet(run / table)) == len(actual), table
        assert pq.read_table(run / table).num_rows == len(actual), table
        expected, actual = expected.drop(columns="run"), actual.drop(columns="run")
        if list(expected.columns) != list(actual.columns):
            problems.append(f"{table}: columns {list(actual.columns)} != {list(expected.columns)}")
            continue
        if dict(expected.dtypes) != dict(actual.dtypes):
            problems.append(f"{table}: dtypes {dict(actual.dtypes)} != {dict(expected.dtypes)}")
        want, got = _rows(expected), _rows(actual)
        if want != got:
            missing, extra = list((want - got).elements()), list((got - want).elements())
            problems.append(f"{table}: {len(actual)} rows, expected {len(expected)}; columns {list(actual.columns)}"
                            f"\n  missing ({len(missing)}): {missing[:5]}\n  extra/duplicated ({len(extra)}): "
                            f"{extra[:5]}")
    assert not problems, "\n".join(problems)


def assert_same_result(expected_run: Path, run: Path) -> None:
    """Same tables, same exported architecture, same summary (but for the path of the export and the wall times)."""
    assert_same_tables(expected_run, run)
    expected_arch, arch = (json.loads((r / "arch.json").read_text()) for r in (expected_run, run))
    assert arch["widths"] == expected_arch["widths"]
    assert arch == expected_arch
    expected_summary, summary = (json.loads((r / "summary.json").read_text()) for r in (expected_run, run))
    for payload in (expected_summary, summary):
        payload.pop("export_path")
        payload.pop("timings")
    assert summary == expected_summary


def snapshot(directory: Path) -> dict[str, tuple]:
    return {p.relative_to(directory).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def invoke(*args: str) -> tuple[object, str]:
    """``sharing-lab ARGS`` in-process (for refusals, which stop before any search): (exit status, stderr)."""
    err = io.StringIO()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    code: object = "main() returned without sys.exit"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exit_:
                code = exit_.code
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return code, err.getvalue()


def temporary_files(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*.tmp"))


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy" / run.name
    shutil.copytree(run, target)
    return target


# --- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, one per set of extra overrides, made when first asked for."""
    cache: dict[tuple[str, ...], Path] = {}

    def get(*extra: str) -> Path:
        if extra not in cache:
            out = tmp_path_factory.mktemp("reference")
            proc = cli(*search_args(out, *_sets(*extra)))
            assert_exit(proc, 0)
            cache[extra] = out / NAME
        return cache[extra]

    return get


@pytest.fixture(scope="module")
def reference(references) -> Path:
    return references()


@pytest.fixture(scope="module")
def killed_after_third_checkpoint(tmp_path_factory) -> Path:
    """A run SIGKILLed right after its third checkpoint (epoch 3: the first search-phase epoch is done);
    ``checkpoint.prev.pt`` holds epoch 2. Tests work on copies."""
    out = tmp_path_factory.mktemp("killed")
    proc = cli(*search_args(out), kill=(r"/checkpoint\.pt$", "after", 4))  # the initial checkpoint, then epochs 1-3
    assert_exit(proc, -signal.SIGKILL)
    run = out / NAME
    assert checkpoint_epoch(run) == 3 and checkpoint_epoch(run, "checkpoint.prev.pt") == 2
    assert not (run / "summary.json").exists()
    return run


# --- 1. reproducibility -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_the_same_records_and_architecture(reference, tmp_path):
    proc = cli(*search_args(tmp_path))
    assert_exit(proc, 0)
    run = tmp_path / NAME
    assert_same_result(reference, run)
    expected_config, expected = read_config(reference)
    config, payload = read_config(run)
    assert config == expected_config
    assert payload == expected
    assert payload["seed"] == 0 and payload["config"]["seed"] == 0
    assert payload["versions"]["sharing_lab"] == sharing_lab.__version__
    assert payload["versions"]["torch"] == torch.__version__


# --- 2. SIGKILL, then --resume ------------------------------------------------------------------------------------
def test_killed_run_refuses_changed_options_then_resumes_to_the_same_records(reference,
                                                                              killed_after_third_checkpoint,
                                                                              tmp_path):
    run = copy_run(killed_after_third_checkpoint, tmp_path)
    before = snapshot(run)
    # The refusal must come before anything touches the run: resuming truncates the tables to the checkpoint.
    for options in (_sets("search.epochs=7"), ["--seed", "1"], ["--scheme", "ordinal"]):
        code, err = invoke("run-search", "--resume", str(run), *options)
        assert code == 2, (options, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "resume without them" in lines[0], err
        assert snapshot(run) == before
    proc = resume(run)
    assert "resuming" in proc.stderr and "at epoch 4" in proc.stderr, proc.stderr
    assert_same_result(reference, run)
    code, err = invoke("run-search", "--resume", str(run))  # and now it is finished
    assert code == 2 and "finished" in err, err


@pytest.mark.slow
def test_resume_with_the_original_command_line_options_is_accepted(reference, killed_after_third_checkpoint,
                                                                    tmp_path):
    run = copy_run(killed_after_third_checkpoint, tmp_path)
    resume(run, "--seed", "0", *_sets(*TINY))
    assert_same_result(reference, run)


def test_resume_repeating_some_of_the_runs_options_is_accepted(reference, killed_after_third_checkpoint, tmp_path):
    run = copy_run(killed_after_third_checkpoint, tmp_path)
    resume(run, "--seed", "0", *_sets(f"search.epochs={EPOCHS}", "data.name=synthetic"))
    assert_same_result(reference, run)


# Deterministic kills inside the windows that matter (see the module docstring). Parts are numbered by flush and
# a flush happens at every epoch end (eval_every=1), so part 3 is the end of epoch index 3 (the second search epoch)
# and part 6 the beam rows of the final step; the N-th checkpoint holds epoch N.
KILL_POINTS = {
    # warm-up, the very first flush, before any epoch checkpoint: the resume starts from the initial checkpoint
    "first-flush-before-any-checkpoint": (r"/scalars/part-000000\.parquet$", "before", 1),
    # search phase, mid-flush: the first table's part 3 is in place, the second one's only a temporary file
    "mid-flush": (r"/part-000003\.parquet$", "before", 2),
    # every part 3 written, checkpoint.pt rotated to checkpoint.prev.pt, the new checkpoint not yet renamed
    "checkpoint-rotation": (r"/checkpoint\.pt$", "before", 5),  # the initial checkpoint is write 1
    # the last checkpoint written (epoch 6), nothing of the final beam search / export yet
    "after-last-checkpoint": (r"/checkpoint\.pt$", "after", EPOCHS + 1),
    # beam rows flushed and arch.json written, summary.json (which marks the run finished) not
    "before-summary": (r"/summary\.json$", "before", 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_inside_a_write_then_resume_gives_the_same_records(point, reference, tmp_path):
    proc = cli(*search_args(tmp_path), kill=KILL_POINTS[point])
    assert_exit(proc, -signal.SIGKILL)
    run = tmp_path / NAME
    assert not (run / "summary.json").exists()
    if point == "checkpoint-rotation":
        assert not (run / "checkpoint.pt").exists() and checkpoint_epoch(run, "checkpoint.prev.pt") == 3
    proc = resume(run)
    assert "warning" not in proc.stderr, proc.stderr  # a missing checkpoint.pt is not a corrupt one
    assert_same_result(reference, run)


@pytest.mark.slow
def test_resume_removes_temporary_files_of_killed_writes(tmp_path):
    proc = cli(*search_args(tmp_path), kill=KILL_POINTS["mid-flush"])
    assert_exit(proc, -signal.SIGKILL)
    run = tmp_path / NAME
    assert temporary_files(run), "the injected kill should have left a temporary part file"
    resume(run)
    assert temporary_files(run) == []


# The real SIGKILL, from outside, at points observed through the run's files.
@pytest.mark.slow
def test_sigkill_during_warm_up_then_resume(reference, tmp_path):
    run = tmp_path / NAME
    with Background(tmp_path, *search_args(tmp_path)) as search:
        search.wait_until(lambda: (run / "checkpoint.pt").exists())  # the first epoch is done
        search.kill()
    assert checkpoint_epoch(run) < WARMUP, "the kill came after the warm-up"
    resume(run)
    assert_same_result(reference, run)


@pytest.mark.slow
def test_sigkill_during_the_search_phase_then_resume(reference, tmp_path):
    run = tmp_path / NAME
    with Background(tmp_path, *search_args(tmp_path)) as search:
        search.wait_until(epoch_at_least(run, 3))
        search.kill()
    assert WARMUP < checkpoint_epoch(run) < EPOCHS
    resume(run)
    assert_same_result(reference, run)


@pytest.mark.slow
def test_sigkill_during_a_record_flush_then_resume(reference, tmp_path):
    """Best effort: kill as soon as a part's temporary file shows up (a flush in progress) after the second
    checkpoint, or else as soon as part 4 appears (then the kill usually lands between the flush and its
    checkpoint). In 3 of 3 trials on a loaded 2-core machine the kill landed mid-flush (a temporary part file of
    flush 2 left behind). Either way the resumed run must equal the uninterrupted one; the deterministic in-flush
    kills are in test_sigkill_inside_a_write_then_resume_gives_the_same_records."""
    run = tmp_path / NAME
    table_dirs = [run / table for table in TABLES]

    def flushing() -> bool:
        for directory in table_dirs:
            with contextlib.suppress(FileNotFoundError):
                if any(name.endswith(".tmp") for name in os.listdir(directory)):
                    return True
        return (run / "scalars" / "part-000004.parquet").exists()

    with Background(tmp_path, *search_args(tmp_path)) as search:
        search.wait_until(epoch_at_least(run, 2))
        search.wait_until(flushing, interval=0.002)
        search.kill()
    assert not (run / "summary.json").exists()
    resume(run)
    assert_same_result(reference, run)


# --- 3. SIGTERM and SIGINT: stop at the end of the epoch, checkpoint, exit 130 ------------------------------------
@pytest.mark.parametrize("signum, eval_every", [
    pytest.param(signal.SIGTERM, 1, id="SIGTERM"),
    pytest.param(signal.SIGINT, 1, id="SIGINT", marks=pytest.mark.slow),
    # checkpoints only at evaluations (epochs 3 and 6): stopped after epoch 4, the stop's checkpoint must flush the
    # rows buffered since the last evaluation
    pytest.param(signal.SIGTERM, 3, id="SIGTERM-between-evaluations", marks=pytest.mark.slow),
])
def test_signal_stops_cleanly_and_the_run_resumes(signum, eval_every, references, tmp_path):
    extra = () if eval_every == 1 else (f"search.eval_every={eval_every}",)
    expected = references(*extra)
    run = tmp_path / NAME
    with Background(tmp_path, *search_args(tmp_path, *_sets(*extra))) as search:
        condition = epoch_at_least(run, 2 if eval_every == 1 else eval_every)  # in the search phase
        search.wait_until(condition)
        signalled_at = condition.seen["epoch"]
        search.proc.send_signal(signum)
        code, stderr = search.finish()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "stop requested" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "--resume" in last and str(run) in last, stderr
    stopped_at = checkpoint_epoch(run)
    assert stopped_at is not None and signalled_at < stopped_at < EPOCHS, (signalled_at, stopped_at)
    assert not (run / "summary.json").exists()
    proc = resume(run)
    assert f"at epoch {stopped_at + 1}" in proc.stderr, proc.stderr
    assert_same_result(expected, run)


# --- 4. a corrupt checkpoint.pt: warn, fall back on checkpoint.prev.pt ---------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_falls_back_on_the_previous_one(damage, reference, killed_after_third_checkpoint,
                                                           tmp_path):
    run = copy_run(killed_after_third_checkpoint, tmp_path)
    path = run / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint\xff" * 4096,
                      "empty": b""}[damage])
    proc = resume(run)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint.pt" in warnings[0] and "unreadable" in warnings[0], proc.stderr
    assert "at epoch 3" in proc.stderr, proc.stderr  # checkpoint.prev.pt holds epoch 2: resume with the third
    assert_same_result(reference, run)


# --- 5. divergence: exit 2, one error line, the last good state checkpointed ---------------------------------------
@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    out = tmp_path_factory.mktemp("diverged")
    proc = cli(*search_args(out, *_sets(f"search.lr={DIVERGING_LR}")))
    return proc, out / NAME


def test_divergence_exits_2_with_an_error_and_keeps_config_and_checkpoint(diverged):
    proc, run = diverged
    assert_exit(proc, 2)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert "diverged" in errors[0] and str(run) in errors[0], errors
    config, payload = read_config(run)
    assert config.search.lr == float(DIVERGING_LR) and payload["seed"] == 0
    state = load_file(run / "checkpoint.pt")
    assert state["epoch"] == 0  # diverged in the first epoch
    assert not (run / "summary.json").exists() and not (run / "arch.json").exists()
    code, err = invoke("run-search", "--out", str(run.parent), "--name", NAME)  # nothing overwritten
    assert code == 2 and "already exists" in err, err


def test_divergence_stderr_is_the_error_line_alone(diverged):
    proc, _ = diverged
    assert_exit(proc, 2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training diverged"), proc.stderr


def test_divergence_checkpoint_holds_finite_weights(diverged):
    proc, run = diverged
    assert_exit(proc, 2)
    state = load_file(run / "checkpoint.pt")["supernet"]
    weights = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    assert any("running_var" in k for k in weights)  # BN statistics are checked too
    bad = sorted(k for k, v in weights.items() if not torch.isfinite(v).all())
    assert not bad, f"{len(bad)} of {len(weights)} tensors are not finite: {bad[:5]}"


def test_divergence_message_says_how_to_resume(diverged):
    proc, run = diverged
    line = proc.stderr.strip().splitlines()[-1]
    assert f"sharing-lab run-search --resume {run} --set search.lr=1e+29" in line, line
    assert (run / "diverged.json").is_file()


# --- 6. bad input: one line, exit status 2, nothing made (a new case is one line) ----------------------------------
# {out} is an empty scratch directory that must stay empty; {arch} a valid exported architecture, {arch_inf} the same
# with Infinity in its widths.
BAD_INPUTS = [
    (["run-search", "--set", "search.flops_target=nan"], "search.flops_target must be a finite number"),
    (["run-search", "--set", "search.flops_target=inf"], "search.flops_target must be a finite number"),
    (["run-search", "--set", "search.flops_target=-inf"], "search.flops_target must be a finite number"),
    (["run-search", "--set", "search.entropy_weight=inf"], "search.entropy_weight must be a finite number"),
    (["run-search", "--set", "search.lr=nan"], "search.lr must be a finite number"),
    (["run-search", "--set", "model.multipliers=[0.5,inf]"], "model.multipliers must be a finite number"),
    (["run-search", "--device", "meta"], "device must be auto, cpu, cuda or cuda:N, got 'meta'"),
    (["run-search", "--device", "mps"], "device must be auto, cpu, cuda or cuda:N, got 'mps'"),
    (["run-search", "--device", "cuda:x"], "device must be auto, cpu, cuda or cuda:N"),
    (["run-search", "--set", "device=xla"], "device must be auto, cpu, cuda or cuda:N"),
    (["run-search", "--name", "n" * 300], "has 300 characters (at most 100)"),
    (["run-search", "--name", "../../escaped"], "contains a path separator"),
    (["run-search", "--name", "/tmp/absolute-run"], "contains a path separator"),
    (["run-search", "--name", "a/b"], "contains a path separator"),
    (["run-search", "--name", ".."], "starts with a dot"),
    (["run-search", "--name", ".hidden"], "starts with a dot"),
    (["run-search", "--name", ""], "is empty"),
    (["run-search", "--name", "   "], "is empty"),
    (["run-search", "--name", "tab\there"], "unprintable"),
    (["run-search", "--set", "model.widths=[60000]"], "more than runtime.max_supernet_gb = 8"),
    (["run-search", "--set", "runtime.max_supernet_gb=1e-6"], "raise runtime.max_supernet_gb"),
    (["run-search", "--set", "runtime.max_supernet_gb=0"], "runtime.max_supernet_gb must be positive"),
    (["retrain", "{arch}", "--name", "n" * 300], "has 300 characters (at most 100)"),
    (["retrain", "{arch}", "--name", "../escaped"], "contains a path separator"),
    (["retrain", "{arch}", "--name", "/abs"], "contains a path separator"),
    (["retrain", "{arch_inf}"], "widths must be a list of integers"),
    (["flops", "resnet20", "--image-size", "-5"], "--image-size"),
    (["flops", "resnet20", "--image-size", "0"], "--image-size"),
    (["flops", "resnet20", "--num-classes", "0"], "--num-classes"),
    (["flops", "resnet20", "--in-channels", "0"], "--in-channels"),
    (["flops", "resnet20", "--widths", "0,4,4"], "positive integers"),
]


@pytest.fixture
def bad_input_paths(tmp_path) -> dict[str, Path]:
    from sharing_lab.search.export import export_payload
    from sharing_lab.space.layout import build_layout

    layout = build_layout("resnet20", "stage", [2, 4], num_classes=10, in_channels=3, image_size=8)
    payload = export_payload(layout, [2, 4, 4], data={"name": "synthetic", "dir": None, "image_size": None})
    arch, arch_inf = tmp_path / "arch.json", tmp_path / "arch-inf.json"
    arch.write_text(json.dumps(payload))
    arch_inf.write_text(json.dumps({**payload, "widths": [2, float("inf"), 4]}))
    assert "Infinity" in arch_inf.read_text()
    out = tmp_path / "out"
    out.mkdir()
    return {"out": out, "arch": arch, "arch_inf": arch_inf}


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS, ids=[" ".join(a)[:60] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(argv, fragment, bad_input_paths):
    paths = bad_input_paths
    args = [a.format(**paths) if a.startswith("{") else a for a in argv]
    if args[0] in ("run-search", "retrain"):
        args += ["--out", str(paths["out"])]
    code, err = invoke(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert fragment in lines[0], lines[0]
    assert list(paths["out"].iterdir()) == []  # no half-made run directory
    assert not Path("/tmp/absolute-run").exists() and not (paths["out"].parent.parent / "escaped").exists()
