"""Sweeps beyond one machine: a two-run recipe (a sweep file, synthetic data) through the local executor, through
submitit's local executor and through a local Ray cluster gives the same records; a killed job is resumed when the
recipe is submitted again; one table of the whole sweep with its varying configuration; ``sharing-lab runs``.

Every run is a tiny 2-epoch search (ResNet-20, candidates {2, 4}, 256 synthetic 3×8×8 images); each executor
starts its own processes. The Ray recipe and the first, killed submission go through the command line in a
subprocess; the others call :func:`sharing_lab.jobs.recipes.run_recipe` (what ``sharing-lab recipe`` calls) here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sharing_lab
from sharing_lab.cli import main
from sharing_lab.config import resolve
from sharing_lab.errors import InputError
from sharing_lab.jobs.executors import ExecutorConfig, executor_config
from sharing_lab.jobs.recipes import FASHION_TARGET, TAU_EMBEDDED, TAU_FASHION, run_recipe, select_jobs
from sharing_lab.jobs.sweep_file import load_sweep

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "data.name=synthetic", "model.widths=[2,4]", "data.batch_size=64", "data.reward_batch_size=32",
    "data.calibration_images=64", "data.eval_batch_size=128", "probes.align_archs=3", "probes.probe_batch=32",
    "search.prob_samples=4", "search.eval_archs=2", "search.beam_top=3", "search.epochs=2",
    "search.warmup_epochs=1", "search.eval_every=1",
]
RUNS = ("two-ordinal-s0", "two-transitionary-s1")
TIMEOUT = 400


def _compare():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "analyses" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare


def write_sweep(path: Path, executor: str = "") -> Path:
    sets = ", ".join(json.dumps(text) for text in TINY)
    path.write_text(f"""[sweep]
name = "two"
set = [{sets}]

[[sweep.runs]]
name = "two-ordinal-s0"
set = ["sharing.scheme=ordinal", "seed=0"]

[[sweep.runs]]
name = "two-transitionary-s1"
set = ["sharing.scheme=transitionary", "seed=1"]
{executor}""")
    return path


def cli(*args, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_WAIT_POLICY": "PASSIVE"}
    result = subprocess.run([sys.executable, "-m", "sharing_lab.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def invoke(*args) -> tuple[object, str, str]:
    """``sharing-lab ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def recipe(sweep: Path, out: Path, settings: ExecutorConfig) -> tuple[dict, list[str]]:
    lines: list[str] = []
    return run_recipe([str(sweep)], "embedded", out, [], settings, lines.append), lines


def assert_same_runs(left: Path, right: Path) -> None:
    compare = _compare()
    for name in RUNS:
        assert (right / name / "summary.json").exists(), name
        assert compare(left / name, right / name, set(), 0.0) == [], name
        assert json.loads((left / name / "arch.json").read_text())["widths"] == \
            json.loads((right / name / "arch.json").read_text())["widths"]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    """The two-run recipe through the local executor (two worker processes): the reference."""
    root = tmp_path_factory.mktemp("local")
    results, _ = recipe(write_sweep(root / "two.toml"), root / "runs", ExecutorConfig(jobs=2))
    assert results == {name: 0 for name in RUNS}
    return root / "runs"


def test_a_sweep_file_gives_its_jobs_and_bad_ones_are_refused(tmp_path):
    jobs = load_sweep(write_sweep(tmp_path / "two.toml")).jobs
    assert [job.name for job in jobs] == list(RUNS)
    assert jobs[1].overrides[-2:] == ("sharing.scheme=transitionary", "seed=1")
    grid = tmp_path / "grid.toml"
    grid.write_text('[sweep]\nname = "g"\n[sweep.grid]\n"sharing.scheme" = ["ordinal", "overlap:0.5"]\nseed = [0, 1]\n')
    names = [job.name for job in select_jobs([str(grid)], "embedded")]
    assert names == ["g-ordinal-0", "g-ordinal-1", "g-overlap0p5-0", "g-overlap0p5-1"]
    (tmp_path / "bad.toml").write_text("[sweep]\nsets = []\n")
    with pytest.raises(InputError, match="unknown key 'sets'"):
        load_sweep(tmp_path / "bad.toml")
    with pytest.raises(InputError, match="unknown recipe"):
        select_jobs(["nope"], "embedded")


def test_more_seeds_add_jobs_and_keep_the_ones_there_are_and_arms_pick_jobs():
    """``recipe --seeds N``: seeds 0..N-1, the job of seed k named and configured the same whatever N (so a
    larger N resumes a smaller one's sweep); ``--arm``: only those arms' jobs; an unknown arm is refused."""
    five = {job.name: job for job in select_jobs(["oit"], "embedded")}
    seven = {job.name: job for job in select_jobs(["oit"], "embedded", seeds=7)}
    assert set(five) < set(seven) and len(seven) == 4 * 7 and "oit-ordinal-s6" in seven
    assert all(seven[name] == job for name, job in five.items())
    overlap = [job.name for job in select_jobs(["overlap"], "embedded", seeds=3)]
    assert overlap.count("overlap-0p75-s0") == 1 and not any(name.startswith("overlap-0p75-s1") for name in overlap)
    picked = select_jobs(["oit", "tau"], "embedded", seeds=7, arms=["oit-ordinal", "tau-3.5e-05"])
    assert sorted(job.name for job in picked) == sorted([f"oit-ordinal-s{k}" for k in range(7)] +
                                                        [f"tau-3.5e-05-s{k}" for k in range(7)])
    with pytest.raises(InputError, match="no arm 'oit-nothing'.*oit-independent"):
        select_jobs(["oit"], "embedded", arms=["oit-nothing"])
    for args, fragment in ((["--seeds", "0"], "--seeds"), (["--arm", "oit-nothing"], "no arm 'oit-nothing'")):
        code, _, err = invoke("recipe", "oit", "--out", "unused", *args)
        assert code == 2 and err.strip().count("\n") == 0 and fragment in err, err


def test_the_fashion_mnist_scale_is_the_embedded_arms_on_its_preset():
    """``--scale fashion-mnist``: the embedded recipes' arms and names, each job on the fashion-mnist preset, with
    that space's calibrated rate (and τ/4, 4τ) and its FLOPs target; every job's configuration resolves."""
    embedded = {job.name: job for job in select_jobs(["all"], "embedded", seeds=2)}
    fashion = {job.name: job for job in select_jobs(["all"], "fashion-mnist", seeds=2)}
    assert set(fashion) == {name.replace(f"{TAU_EMBEDDED / 4:g}", f"{TAU_FASHION / 4:g}")
                            .replace(f"{TAU_EMBEDDED * 4:g}", f"{TAU_FASHION * 4:g}") for name in embedded}
    assert all(job.config == "fashion-mnist" for job in fashion.values())
    assert f"sharing.transition={TAU_FASHION}" in fashion["oit-transitionary-s1"].overrides
    assert f"search.flops_target={FASHION_TARGET}" in fashion["topn-ordinal-target-s0"].overrides
    config = resolve(fashion["topn-ordinal-target-s0"].config, fashion["topn-ordinal-target-s0"].overrides)
    assert (config.data.name, config.search.flops_target) == ("fashion-mnist", FASHION_TARGET)
    code, _, err = invoke("recipe", "oit", "--scale", "nope", "--out", "unused")
    assert code == 2 and "fashion-mnist" in err


def test_executor_options_come_from_the_table_and_the_command_line():
    settings = executor_config({"kind": "slurm", "partition": "gpu", "time_min": 30}, ["gpus_per_job=1"])
    assert (settings.kind, settings.partition, settings.time_min, settings.gpus_per_job) == ("slurm", "gpu", 30, 1)
    assert executor_config({}, ["time_min=5"], settings).partition == "gpu"  # later sources override earlier ones
    assert executor_config() == ExecutorConfig()
    for bad, fragment in (({"kind": "pbs"}, "executor must be one of"), ({"partion": "x"}, "unknown executor key"),
                          ({"time_min": "long"}, "must be an integer"), ({"cpus_per_job": 0}, "at least 1")):
        with pytest.raises(InputError, match=fragment):
            executor_config(bad)


def test_bad_executor_input_is_one_line_and_exit_2(tmp_path):
    sweep = write_sweep(tmp_path / "two.toml")
    code, _, err = invoke("recipe", sweep, "--out", tmp_path / "runs", "--executor-set", "partion=gpu")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "unknown executor key 'partion'" in err and "Traceback" not in err
    if not any((Path(p) / "sbatch").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        code, _, err = invoke("recipe", sweep, "--out", tmp_path / "runs", "--executor", "slurm")
        assert code == 2 and "sbatch is not on PATH" in err, err
    code, _, err = invoke("recipe", sweep, "--out", tmp_path / "runs", "--executor", "ray", "--executor-set",
                          "num_cpus=1", "--executor-set", "cpus_per_job=2")
    assert code == 2 and "exceeds the local Ray cluster's num_cpus" in err, err
    assert not (tmp_path / "runs" / RUNS[0]).exists()


def test_submitit_local_executor_gives_the_records_of_the_local_executor(local_sweep, tmp_path):
    settings = ExecutorConfig(kind="slurm", cluster="local", cpus_per_job=1, time_min=20)
    results, lines = recipe(write_sweep(tmp_path / "two.toml"), tmp_path / "runs", settings)
    assert results == {name: 0 for name in RUNS}
    assert sum(line.startswith("submitted ") for line in lines) == 2
    assert_same_runs(local_sweep, tmp_path / "runs")
    assert any((tmp_path / "runs" / ".submitit").glob("*_log.out"))  # submitit's own job logs


def test_a_local_ray_cluster_gives_the_records_of_the_local_executor(local_sweep, tmp_path):
    result = cli("recipe", write_sweep(tmp_path / "two.toml"), "--out", tmp_path / "runs", "--executor", "ray",
                 "--executor-set", "num_cpus=2", "--executor-set", "cpus_per_job=1")
    assert "2 of 2 runs finished" in result.stdout
    assert_same_runs(local_sweep, tmp_path / "runs")


def test_a_killed_job_is_resumed_when_the_recipe_is_submitted_again(local_sweep, tmp_path):
    """The recipe (executor from its [executor] table: submitit, local cluster) with one run already finished
    (copied from the reference): that one is not submitted. SIGKILL of the other search's process (the pid in its
    run.lock) after its first checkpointed epoch: the recipe reports it failed, ``runs`` says stopped; submitting
    again resumes it from its checkpoint, and both equal the uninterrupted local runs."""
    import shutil

    sweep = write_sweep(tmp_path / "two.toml", '\n[executor]\nkind = "slurm"\ncluster = "local"\ncpus_per_job = 1\n')
    out = tmp_path / "runs"
    shutil.copytree(local_sweep / RUNS[0], out / RUNS[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-m", "sharing_lab.cli", "recipe", str(sweep), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    victim = out / RUNS[1]
    deadline = time.monotonic() + TIMEOUT
    while not (victim / "scalars" / "part-000000.parquet").exists():  # epoch 1 flushed and checkpointed
        assert time.monotonic() < deadline and driver.poll() is None, "the run never reached its first checkpoint"
        time.sleep(0.02)
    pid = int((victim / "run.lock").read_text().split()[0])
    assert not (victim / "summary.json").exists()
    os.kill(pid, signal.SIGKILL)
    _, stderr = driver.communicate(timeout=TIMEOUT)
    assert driver.returncode == 1 and f"runs failed: {RUNS[1]}" in stderr, stderr
    assert f"skip {RUNS[0]} (finished)" in stderr and stderr.count("submitted ") == 1, stderr
    assert not (victim / "summary.json").exists()
    code, stdout, _ = invoke("runs", out, "--json")
    assert {row["run"]: row["state"] for row in json.loads(stdout)["runs"]} == {RUNS[0]: "finished",
                                                                               RUNS[1]: "stopped"}
    results, lines = recipe(sweep, out, ExecutorConfig(kind="slurm", cluster="local", cpus_per_job=1))
    assert results == {name: 0 for name in RUNS} and f"skip {RUNS[0]} (finished)" in lines
    assert "resuming" in (out / f"{RUNS[1]}.log").read_text()
    assert_same_runs(local_sweep, out)


def test_read_table_of_a_sweep_adds_the_configuration_that_varies(local_sweep):
    scalars = sharing_lab.read_table(local_sweep, "scalars")
    assert list(scalars.columns[:3]) == ["run", "sharing.scheme", "seed"]
    assert set(scalars["run"]) == set(RUNS)
    for run, scheme, seed in ((RUNS[0], "ordinal", 0), (RUNS[1], "transitionary", 1)):
        rows = scalars[scalars["run"] == run]
        assert (rows["sharing.scheme"] == scheme).all() and (rows["seed"] == seed).all()
        assert rows.drop(columns=["sharing.scheme", "seed"]).reset_index(drop=True).equals(
            sharing_lab.read_table(local_sweep / run, "scalars"))
    assert "search.epochs" not in scalars  # the same in every run
    probs = sharing_lab.read_table(local_sweep, "probs")
    assert probs.groupby("sharing.scheme")["prob"].count().to_dict() == {
        scheme: len(sharing_lab.read_table(local_sweep / run, "probs"))
        for run, scheme in zip(RUNS, ("ordinal", "transitionary"))}
    assert "sharing.scheme" not in sharing_lab.read_table(local_sweep / RUNS[0], "scalars")  # one run: as before


def test_runs_lists_states_and_key_results(local_sweep, tmp_path):
    code, stdout, _ = invoke("runs", local_sweep, "--json")
    payload = json.loads(stdout)
    assert payload["counts"] == {"finished": 2, "running": 0, "stopped": 0, "diverged": 0}
    for row in payload["runs"]:
        summary = json.loads((local_sweep / row["run"] / "summary.json").read_text())
        assert row["state"] == "finished" and row["epochs_done"] == row["epochs"] == 2
        assert row["widths"] == summary["exported"]["widths"]
        assert row["test_acc"] == summary["exported"]["test_acc"] and row["macs"] == summary["exported"]["macs"]
        assert set(row["config"]) == {"sharing.scheme", "seed"}
    text = invoke("runs", local_sweep)[1]
    assert "2 finished, 0 running, 0 stopped, 0 diverged" in text and RUNS[1] in text
    # stopped, diverged and running from what the run directory says
    import shutil

    from sharing_lab.runs import rundir
    from sharing_lab.runs.sweeps import run_state

    copy = tmp_path / "copy"
    shutil.copytree(local_sweep / RUNS[0], copy)
    (copy / "summary.json").unlink()
    assert run_state(copy) == "stopped"
    rundir.mark_diverged(copy, {"message": "the loss is nan"})
    assert run_state(copy) == "diverged"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True);"
                               " time.sleep(60)", str(copy / "run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_state(copy) == "running"
    finally:
        holder.kill()
        holder.wait()
    assert run_state(copy) == "diverged"
    code, _, err = invoke("runs", tmp_path / "nothing")
    assert code == 2 and "does not exist" in err
