"""TensorBoard event files (live with ``logging.tensorboard=true``, and ``sharing-lab tensorboard RUN``) read back
with TensorBoard's own reader hold the values of the records: scalars, per-layer Φ/alignment/coupled norm and
decision probabilities; a missing extra is one line; configurations without the ``logging`` section still load."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sharing_lab
from sharing_lab import extras
from sharing_lab.cli import main
from sharing_lab.runs import rundir
from sharing_lab.search.request import Request, resolve

TINY = [
    "data.name=synthetic", "model.widths=[2,4]", "data.batch_size=64", "data.reward_batch_size=32",
    "data.calibration_images=64", "data.eval_batch_size=128", "probes.align_archs=3", "probes.probe_batch=32",
    "search.prob_samples=4", "search.eval_archs=2", "search.beam_top=3", "search.epochs=2",
    "search.warmup_epochs=1", "search.eval_every=1",
]


def invoke(*args) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def read_events(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``logdir`` as {tag: sorted [(step, value)]}, by TensorBoard's reader."""
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: sorted((event.step, event.value) for event in accumulator.Scalars(tag))
            for tag in accumulator.Tags()["scalars"]}


def expected_events(run: Path) -> dict[str, list[tuple[int, float]]]:
    """What the events must hold, from the Parquet records (float32, as TensorBoard stores scalars)."""
    expected = defaultdict(list)

    def add(tag: str, step, value) -> None:
        if value is not None and not math.isnan(float(value)):
            expected[tag].append((int(step), float(np.float32(value))))

    for row in sharing_lab.read_table(run, "scalars").itertuples():
        add(row.name, row.step, row.value)
    for row in sharing_lab.read_table(run, "layers").to_dict("records"):
        for metric in ("phi", "phi_code", "cos_align", "coupled_norm"):
            add(f"layers/{metric}/{row['layer']:02d}", row["step"], row.get(metric))
    for row in sharing_lab.read_table(run, "probs").itertuples():
        add(f"probs/{row.layer:02d}/{row.width}", row.step, row.prob)
    return {tag: sorted(values) for tag, values in expected.items()}


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tb")
    return sharing_lab.run_search(None, out=out, name="live", overrides=[*TINY, "logging.tensorboard=true"],
                                  log=lambda message: None)


def test_live_events_hold_the_values_of_the_records(live_run):
    events = read_events(live_run / rundir.TENSORBOARD)
    expected = expected_events(live_run)
    assert {"train_loss", "val_acc_mean", "phi", "cos_align", "layers/phi/00", "probs/00/2"} <= set(expected)
    assert events == expected
    layers = len(sharing_lab.read_table(live_run, "layers")["layer"].unique())
    assert sum(tag.startswith("layers/phi/") for tag in events) == layers


def test_the_tensorboard_command_writes_the_same_events_and_overwrites_nothing(live_run, tmp_path):
    code, out, err = invoke("tensorboard", live_run.parent, "--out", tmp_path / "tb")
    assert code == 0, err
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in out
    assert read_events(tmp_path / "tb" / "live") == expected_events(live_run)
    for args in (("--out", tmp_path / "tb"), ()):  # again into the same place; into the run's live events
        code, _, err = invoke("tensorboard", live_run, *args)
        assert code == 2 and "already holds TensorBoard event files" in err and err.count("\n") == 1, err
    copy = tmp_path / "copy"
    shutil.copytree(live_run, copy, ignore=shutil.ignore_patterns(rundir.TENSORBOARD))
    code, _, err = invoke("tensorboard", copy)
    assert code == 0, err
    assert read_events(copy / rundir.TENSORBOARD) == expected_events(live_run)


def test_a_resume_may_switch_tensorboard_on_and_old_configs_load(live_run, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(live_run, stopped)
    (stopped / rundir.SUMMARY).unlink()
    payload = json.loads((stopped / rundir.CONFIG).read_text())
    payload["format"] = 2
    del payload["config"]["logging"]  # a config.json written before the logging section existed
    (stopped / rundir.CONFIG).write_text(json.dumps(payload))
    config, _ = rundir.read_config(stopped)
    assert config.logging.tensorboard is False
    wanted, run_dir = resolve(Request(resume=str(stopped), overrides=("logging.tensorboard=true",)))
    assert run_dir == stopped and wanted.logging.tensorboard is True
    code, _, err = invoke("run-search", "--resume", stopped, "--set", "search.epochs=5")
    assert code == 2 and "search.epochs" in err  # training options still may not change


def test_a_missing_extra_is_one_line_naming_what_to_install(monkeypatch, tmp_path):
    real = extras.importlib.import_module

    def without(name, *args):
        if name.partition(".")[0] in ("ray", "submitit") or name == "torch.utils.tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(extras.importlib, "import_module", without)
    sets = [part for text in (*TINY, "logging.tensorboard=true") for part in ("--set", text)]
    code, _, err = invoke("run-search", "--out", tmp_path, "--name", "r", *sets)
    assert code == 2 and "pip install 'sharing-lab[tensorboard]'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()
    sweep = tmp_path / "s.toml"
    sweep.write_text('[sweep]\n[[sweep.runs]]\nname = "a"\nset = ["data.name=synthetic"]\n')
    for kind, extra in (("ray", "ray"), ("slurm", "slurm")):
        code, _, err = invoke("recipe", sweep, "--out", tmp_path / "runs", "--executor", kind)
        assert code == 2 and f"pip install 'sharing-lab[{extra}]'" in err and err.count("\n") == 1, err
