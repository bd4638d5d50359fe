"""Bad input at the edge (issue 26): configuration values checked once with their cross-field rules and the
precision they are used in, nesting bounded before a parser recurses, work whose size the user sets bounded up
front, plugins that fail on import, sweep values of the wrong type, a FIFO where a checkpoint should be, and JSON
output that is standard JSON. Each: exit 2, one line, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_reliability_closed import fingerprint

from sharing_lab.cli import main

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "records" / "embedded" / "oit-ordinal-s0"
DEEP = "[" * 3000 + "1" + "]" * 3000


def run_cli(args, capsys) -> tuple[object, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def setup(tmp_path: Path) -> dict[str, Path]:
    """Files the cases read: a deep TOML, a run whose config.json nests 100,000 deep, a finished run whose
    summary.json is a list, arch.json files with absurd widths, a plugin that raises, two sweeps, a run whose
    checkpoint is a FIFO."""
    (tmp_path / "deep.toml").write_text(f"[search]\nlr = {DEEP}\n")
    deep_run = tmp_path / "deep-run"
    deep_run.mkdir()
    (deep_run / "config.json").write_text('{"format": 5, "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    listed = tmp_path / "listed" / "run"
    listed.mkdir(parents=True)
    shutil.copy(RUN / "config.json", listed / "config.json")
    (listed / "summary.json").write_text("[1, 2]")
    arch = json.loads((RUN / "arch.json").read_text())
    for name, width in (("huge", 10**30), ("big", 100_000)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**arch, "widths": [width] * 3}))
    (tmp_path / "badplugin.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "top.toml").write_text('[sweep]\nname = "s"\nretrain_top = "x"\n[[sweep.runs]]\nname = "a"\n'
                                       'set = ["seed=0"]\n')
    many = ", ".join(map(str, range(1000)))
    (tmp_path / "many.toml").write_text(f'[sweep]\nname = "m"\n[sweep.grid]\nseed = [{many}]\n'
                                        f'"search.lr" = [{many}]\n')
    hundred = ", ".join(map(str, range(100)))
    (tmp_path / "unknown.toml").write_text(f'[sweep]\nname = "u"\n[sweep.grid]\nseed = [{hundred}]\n'
                                           f'"search.nope" = [{hundred}]\n')
    (tmp_path / "seed.toml").write_text(f"seed = {2**70}\n")
    (tmp_path / "runset.toml").write_text('[sweep]\nname = "r"\n[[sweep.runs]]\nname = "a"\nset = "seed=0"\n')
    big_seed = tmp_path / "big-seed"
    shutil.copytree(RUN, big_seed, ignore=shutil.ignore_patterns("summary.json", "*.pt"))
    payload = json.loads((big_seed / "config.json").read_text())
    payload["config"]["seed"] = 2**70
    (big_seed / "config.json").write_text(json.dumps(payload))
    fifo_run = tmp_path / "fifo-run"
    shutil.copytree(RUN, fifo_run)
    os.mkfifo(fifo_run / "checkpoint.pt")
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    return {"tmp": tmp_path, "big_seed": big_seed, "deep_run": deep_run, "listed": listed.parent, "fifo_run": fifo_run}


CASES = {
    "negative momentum": (["run-search", "--set", "search.momentum=-1"], "search.momentum must be at least 0"),
    "nesterov without momentum": (["run-search", "--set", "search.nesterov=true", "--set", "search.momentum=0"],
                                  "search.nesterov needs a positive search.momentum"),
    "nesterov without momentum (retrain)": (["run-search", "--set", "retrain.momentum=0"],
                                            "retrain.nesterov needs a positive retrain.momentum"),
    "seed beyond 64 bits": (["run-search", "--seed", str(2**70)], "seed must be an integer in 0..2**63 - 1"),
    "theorem seed beyond 64 bits": (["theorem", "--seed", str(2**70)], "--seed"),
    "a TOML seed beyond 64 bits": (["run-search", "--config", "{tmp}/seed.toml"], "seed must be an integer"),
    "a config.json seed beyond 64 bits": (["run-search", "--resume", "{big_seed}"], "seed must be an integer"),
    "a run's set that is a string": (["recipe", "{tmp}/runset.toml", "--out", "{tmp}/sweep"],
                                     "set must be a list of key=value strings"),
    "a float that overflows float32": (["run-search", "--set", "search.weight_decay=1e300"], "overflows float32"),
    "--set nested 3000 deep": (["run-search", "--set", f"model.widths={DEEP}"], "nests deeper than 64 levels"),
    "TOML nested 3000 deep": (["run-search", "--config", "{tmp}/deep.toml"], "nests deeper than 64 levels"),
    "config.json nested 100,000 deep": (["run-search", "--resume", "{deep_run}"], "nests deeper than 64 levels"),
    "summary.json holding a list": (["runs", "{listed}"], "a JSON object expected, got list"),
    "calibrating to a NaN fraction": (["budget", "--calibrate", "--fraction", "nan"], "--fraction must be a number"),
    "a billion epochs": (["budget", "--no-replay", "--set", "search.epochs=1000000000"],
                         "search.epochs must be at most 100,000"),
    "widths of 10^30": (["retrain", "{tmp}/huge.json", "--out", "{tmp}/retrained"], "at most 65,536 channels"),
    "widths of 100,000": (["retrain", "{tmp}/big.json", "--out", "{tmp}/retrained"], "at most 65,536 channels"),
    "a plugin that raises": (["--plugin", "{tmp}/badplugin.py", "list"], "failed to load: RuntimeError: boom"),
    "an empty plugin name": (["--plugin", "", "list"], "got an empty name"),
    "retrain_top of the wrong type": (["recipe", "{tmp}/top.toml", "--out", "{tmp}/sweep"],
                                      "retrain_top must be a whole number"),
    "a sweep of a million runs": (["recipe", "{tmp}/many.toml", "--out", "{tmp}/sweep"], "at most 10,000"),
    "10,000 runs with an unknown key": (["recipe", "{tmp}/unknown.toml", "--out", "{tmp}/sweep"],
                                        "unknown config key 'search.nope'"),
    "a FIFO as the checkpoint": (["beam", "{fifo_run}", "--top", "2"], "is not a regular file"),
    "--out a device": (["run-search", "--out", "/dev/null"], "--out /dev/null is not a directory"),
    "--out a link loop": (["run-search", "--out", "{tmp}/loopA"], "Too many levels of symbolic links"),
}


@pytest.mark.skipif(not RUN.is_dir(), reason="no committed records in this checkout")
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run-search that got through would write runs/ here
    places = setup(tmp_path)
    args, fragment = CASES[case]
    before = fingerprint(tmp_path)
    code, out, err = run_cli([arg.format(**places) for arg in args], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, (code, err)
    assert fragment in lines[0], lines[0]
    assert fingerprint(tmp_path) == before


def test_json_output_is_standard_json(capsys):
    """``budget --json`` (whose replay fields are NaN without a replay) parses with a strict reader."""
    code, out, _ = run_cli(["budget", "--no-replay", "--json"], capsys)

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    assert code in (0, None)
    json.loads(out, parse_constant=refuse)
    code, out, _ = run_cli(["groundtruth", "show", "digits-resnet20-c1234", "--json"], capsys)
    assert code in (0, None)
    json.loads(out, parse_constant=refuse)


@pytest.mark.skipif(not RUN.is_dir(), reason="no committed records in this checkout")
def test_claims_read_past_a_summary_that_is_not_an_object(tmp_path, capsys):
    run = tmp_path / "sweep" / "run"
    shutil.copytree(RUN, run)
    (run / "summary.json").write_text("[1, 2]")
    code, out, err = run_cli(["claims", run.parent], capsys)
    assert code in (0, None) and "Traceback" not in err and "29 inconclusive" in out


def test_a_diverged_controller_is_told_which_rate_to_lower(tmp_path, capsys):
    """The hint names search.controller_lr (the rate that blew up the controller), not search.lr."""
    from test_reliability import TINY, _sets

    code, _, err = run_cli(["run-search", "--out", tmp_path, "--name", "run", *_sets(*TINY),
                            "--set", "search.controller_lr=1e30"], capsys)
    assert code == 2 and "controller's weights are not finite" in err, err
    assert "--set search.controller_lr=1e+29" in err


def _first_part(run: Path, table: str) -> Path:
    return sorted((run / table).glob("part-*.parquet"))[0]


RECORD_CASES = {  # table, the change to its first part, the commands that read it, what the refusal says
    "a part without its step column": ("scalars", lambda f: f.drop(columns=["step"]), ["runs", "claims"],
                                       "lacks the column(s) step of the scalars table"),
    "epochs all NaN": ("scalars", lambda f: f.assign(epoch=float("nan")), ["runs", "claims", "tensorboard"],
                       "column epoch must hold whole numbers"),
    "steps that are text": ("scalars", lambda f: f.assign(step=f["step"].astype(str) + "x"), ["runs", "claims"],
                            "column step must hold whole numbers"),
    "widths like x,y": ("archs", lambda f: f.assign(widths="x,y"), ["claims", "export", "retrain"],
                        "column widths must hold comma-separated whole numbers"),
}
COMMANDS = {"runs": ["runs", "{parent}"], "claims": ["claims", "{parent}"],
            "tensorboard": ["tensorboard", "{run}", "--out", "{parent}/tb"],
            "export": ["export", "{run}", "--rank", "1"], "retrain": ["retrain", "{run}", "--top", "1"]}


@pytest.mark.skipif(not RUN.is_dir(), reason="no committed records in this checkout")
@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_records_that_do_not_match_their_schema_are_named(case, tmp_path, capsys):
    import pandas as pd

    table, change, commands, fragment = RECORD_CASES[case]
    run = tmp_path / "sweep" / "run"
    shutil.copytree(RUN, run)
    part = _first_part(run, table)
    change(pd.read_parquet(part)).to_parquet(part)
    before = fingerprint(tmp_path)
    for command in commands:
        code, out, err = run_cli([arg.format(run=run, parent=run.parent) for arg in COMMANDS[command]], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, (command, code, err)
        assert fragment in lines[0] and str(part) in lines[0], (command, lines[0])
    assert fingerprint(tmp_path) == before


def test_a_foreign_file_among_the_parts_is_left_alone_on_resume(tmp_path):
    """``part-abc.parquet`` is not a part the run wrote: resume neither reads nor deletes it (it used to raise)."""
    from sharing_lab.runs.records import RecordWriter, read_run_table

    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    (run / "scalars" / "part-abc.parquet").write_bytes(b"not ours")
    writer = RecordWriter(run, "run", next_part=1)
    writer.truncate()
    assert (run / "scalars" / "part-abc.parquet").read_bytes() == b"not ours"
    assert len(read_run_table(run, "scalars")) > 0


@pytest.mark.skipif(not RUN.is_dir(), reason="no committed records in this checkout")
def test_tensorboard_on_a_full_disk_is_one_line_and_leaves_no_event_file(tmp_path, capsys, monkeypatch):
    """The event writer fails half way (ENOSPC, as on a full file system): one line naming the cause, and neither
    a partial event file nor the folder the export made is left behind."""
    import errno

    from sharing_lab.runs import tensorboard

    pytest.importorskip("torch.utils.tensorboard")
    written = []

    def full(self, table, rows):
        written.append(table)
        if len(written) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.logdir))
        self.writer.add_scalar("x", 1.0, 0)
        self.writer.flush()

    monkeypatch.setattr(tensorboard.EventSink, "write", full)
    code, out, err = run_cli(["tensorboard", RUN, "--out", tmp_path / "tb"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0], err
    assert not list((tmp_path).rglob("events.out.tfevents.*")) and not (tmp_path / "tb" / RUN.name).exists()
