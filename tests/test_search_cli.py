"""End to end through the command line: tiny searches on synthetic data, their records (DESIGN §5), beam, export,
retrain, and bad input (DESIGN §4: one line on stderr, exit status 2, no traceback, nothing overwritten).

Every search here is tiny (ResNet-20 with candidates {2, 4}, one decision per stage, 256 synthetic 3×8×8 images,
one or two epochs) and runs in-process through :func:`sharing_lab.cli.main`; one test goes through a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import sharing_lab
from sharing_lab import registry
from sharing_lab.cli import main
from sharing_lab.config import Config, apply_overrides, load_toml, preset_names, to_dict
from sharing_lab.runs import rundir
from sharing_lab.runs.records import SCHEMAS
from sharing_lab.search.export import build_exported
from sharing_lab.space.flops import macs_range
from sharing_lab.space.layout import build_layout

TINY = [
    "data.name=synthetic", "model.widths=[2,4]", "data.batch_size=64", "data.reward_batch_size=32",
    "data.calibration_images=64", "data.eval_batch_size=128", "probes.align_archs=3", "probes.probe_batch=32",
    "search.prob_samples=4", "search.eval_archs=2", "search.beam_top=3", "retrain.batch_size=64",
]
ONE_EPOCH = ["search.epochs=1", "search.warmup_epochs=0", "search.eval_every=1"]
TABLES = ("scalars", "probs", "archs", "layers", "pairs")
RETRAIN_TABLES = ("retrain", "retrain_curves")
REQUIRED_SCALARS = {"train_loss", "train_acc", "val_acc_mean", "val_acc_max", "phi", "cos_align", "coupled_norm",
                    "reward", "baseline", "entropy", "macs_sampled"}
NUM_DECISIONS = 3  # ResNet-20, stage granularity


def _sets(*overrides: str) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def _layout():
    return build_layout("resnet20", "stage", [2, 4], num_classes=10, in_channels=3, image_size=8)


MIN_MACS, MAX_MACS = macs_range(_layout())


@dataclass
class Result:
    code: object  # exit status, or the exception that escaped main()
    out: str
    err: str


def invoke(*args) -> Result:
    """Run ``sharing-lab ARGS`` in-process; restores the signal handlers that run-search installs."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    code: object = "main() returned without sys.exit"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exit_:
                code = exit_.code
            except Exception as error:  # noqa: BLE001 - reported to the test, which expects exit status 2
                code = error
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return Result(code, out.getvalue(), err.getvalue())


def search(out: Path, name: str, *extra) -> Result:
    return invoke("run-search", "--out", out, "--name", name, *_sets(*TINY), *extra)


def assert_ok(result: Result) -> None:
    assert result.code == 0, f"exit {result.code!r}\nstdout:\n{result.out}\nstderr:\n{result.err}"


def assert_input_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, f"exit {result.code!r}\nstdout:\n{result.out}\nstderr:\n{result.err}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error:"), result.err
    assert "Traceback" not in result.err + result.out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def snapshot(directory: Path) -> dict[str, tuple]:
    """Every path under ``directory`` with its content hash and mtime (directories: mtime only)."""
    state = {}
    for path in sorted(directory.rglob("*")):
        key = path.relative_to(directory).as_posix()
        if path.is_dir():
            state[key] = ("dir",)
        else:
            state[key] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return state


def check_tables(run: Path, tables: tuple[str, ...] = TABLES) -> dict[str, pd.DataFrame]:
    """Every table reads back with sharing_lab and directly, with the required columns and dtypes."""
    frames = {}
    for table in tables:
        frame = sharing_lab.read_table(run, table)
        assert len(frame) > 0, table
        assert (frame["run"] == run.name).all(), table
        for column, dtype in SCHEMAS[table].items():
            assert column in frame.columns, (table, column)
            if dtype == pa.int64():
                assert frame[column].dtype == "int64", (table, column, frame[column].dtype)
            elif dtype == pa.float64():
                assert frame[column].dtype == "float64", (table, column, frame[column].dtype)
            else:
                assert pd.api.types.is_string_dtype(frame[column]), (table, column, frame[column].dtype)
        for part in sorted((run / table).glob("part-*.parquet")):
            schema = pq.read_schema(part)
            assert schema.field("run").type == pa.string(), (part, "run")
            for column, dtype in SCHEMAS[table].items():
                assert schema.field(column).type == dtype, (part, column)
        direct = pd.read_parquet(run / table)  # the table directory as a Parquet dataset, no sharing_lab
        assert len(direct) == len(frame), table
        assert set(SCHEMAS[table]) | {"run"} <= set(direct.columns), table
        assert pq.read_table(run / table).num_rows == len(frame), table
        frames[table] = frame
    assert not list(run.rglob("*.tmp")), "temporary files left behind"
    return frames


def check_probs(probs: pd.DataFrame) -> None:
    assert set(probs["width"]) <= {2, 4}
    assert ((probs["prob"] >= 0) & (probs["prob"] <= 1)).all()
    sums = probs.groupby(["step", "layer"])["prob"].sum()
    assert len(sums) > 0
    assert ((sums - 1.0).abs() < 1e-5).all(), sums
    assert set(probs["layer"]) == set(range(NUM_DECISIONS))
    for (_, _), group in probs.groupby(["step", "layer"]):
        assert sorted(group["choice"]) == [0, 1]
        assert group.sort_values("choice")["width"].tolist() == [2, 4]


def check_widths(text: str) -> list[int]:
    widths = [int(w) for w in text.split(",")]
    assert len(widths) == NUM_DECISIONS and set(widths) <= {2, 4}, text
    return widths


def check_exported_forward(path: Path) -> None:
    net = build_exported(path)
    net.eval()
    with torch.no_grad():
        logits = net(torch.randn(5, 3, 8, 8))
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()


# --- the shared run -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One transitionary search (1 warm-up + 1 search epoch, evaluated at both) shared by the tests below."""
    out = tmp_path_factory.mktemp("runs")
    result = search(out, "r", "--seed", "0", *_sets("search.epochs=2", "search.warmup_epochs=1",
                                                    "search.eval_every=1"))
    assert_ok(result)
    return out / "r", result


@pytest.fixture(scope="module")
def shared_run(shared) -> Path:
    return shared[0]


def test_stdout_names_the_run_directory(shared):
    run, result = shared
    assert f"run directory: {run}" in result.out
    assert f"summary figure: {run / 'summary.png'}" in result.out
    assert "Traceback" not in result.err


def test_config_json_holds_resolved_config_and_versions(shared_run):
    payload = json.loads((shared_run / "config.json").read_text())
    expected = apply_overrides(Config(), [*TINY, "search.epochs=2", "search.warmup_epochs=1", "search.eval_every=1",
                                          "seed=0"])
    assert payload["config"] == to_dict(expected)
    assert payload["config"]["seed"] == 0 and "device" in payload["config"]
    assert payload["run"] == "r"
    assert payload["format"] == rundir.CONFIG_FORMAT == 5 and "code_revision" in payload
    assert payload["versions"]["sharing_lab"] == sharing_lab.__version__
    assert payload["versions"]["torch"] == torch.__version__


def test_config_json_records_the_device_actually_used(shared_run):
    payload = json.loads((shared_run / "config.json").read_text())
    recorded = {payload.get("device"), payload["config"].get("device")} - {None, "auto"}
    assert recorded, payload


def test_run_directory_contents(shared_run):
    for name in ("config.json", "summary.json", "arch.json", "checkpoint.pt", "summary.png"):
        assert (shared_run / name).is_file(), name
    for table in TABLES:
        assert list((shared_run / table).glob("part-*.parquet")), table


def test_tables_have_required_columns_and_dtypes(shared_run):
    check_tables(shared_run)


def test_scalars_names_and_values(shared_run):
    scalars = sharing_lab.read_table(shared_run, "scalars")
    names = set(scalars["name"])
    assert REQUIRED_SCALARS <= names, REQUIRED_SCALARS - names

    def values(name):
        return scalars.loc[scalars["name"] == name, "value"]

    assert set(scalars["epoch"]) == {0, 1}
    assert len(values("train_loss")) == 2 and values("train_loss").map(lambda v: v == v and v > 0).all()
    for name in ("train_acc", "val_acc_mean", "val_acc_max"):
        assert values(name).between(0, 1).all(), name
    assert (values("val_acc_max").to_numpy() >= values("val_acc_mean").to_numpy() - 1e-12).all()
    assert values("macs_sampled").between(MIN_MACS, MAX_MACS).all()
    assert (values("phi") > 0).all()
    # controller scalars exist only for the search phase (epoch 1)
    for name in ("reward", "baseline", "entropy"):
        assert set(scalars.loc[scalars["name"] == name, "epoch"]) == {1}, name
    assert values("entropy").iloc[0] > 0


def test_phi_scalar_is_the_sum_of_layer_phis(shared_run):
    scalars = sharing_lab.read_table(shared_run, "scalars")
    layers = sharing_lab.read_table(shared_run, "layers")
    phi = scalars[scalars["name"] == "phi"].set_index("step")["value"]
    per_layer = layers.groupby("step")["phi"].sum()
    common = phi.index.intersection(per_layer.index)
    assert len(common) > 0
    for step in common:
        assert per_layer[step] == pytest.approx(phi[step], rel=1e-5)


def test_probs_sum_to_one(shared_run):
    check_probs(sharing_lab.read_table(shared_run, "probs"))


def test_archs_sample_and_beam_rows(shared_run):
    archs = sharing_lab.read_table(shared_run, "archs")
    assert {"sample", "beam"} <= set(archs["source"])
    samples = archs[archs["source"] == "sample"]
    assert len(samples) == 2 * 2  # eval_archs at each of the two evaluations
    beams = archs[archs["source"] == "beam"]
    assert len(beams) == 3
    assert beams["rank"].tolist() == [0, 1, 2]
    assert beams["log_prob"].is_monotonic_decreasing
    assert len(set(beams["widths"])) == 3
    assert (beams["log_prob"] <= 0).all()
    layout = _layout()
    for _, row in archs[archs["source"].isin(["sample", "beam"])].iterrows():
        widths = check_widths(row["widths"])
        assert row["macs"] == sharing_lab.space.flops.count_macs(layout, widths)
        assert 0 <= row["acc"] <= 1


def test_exported_architecture_is_the_likeliest_beam_row_and_builds(shared_run):
    payload = json.loads((shared_run / "arch.json").read_text())
    beams = sharing_lab.read_table(shared_run, "archs").query("source == 'beam'")
    best = beams.sort_values("log_prob", ascending=False).iloc[0]
    assert payload["model"] == "resnet20"
    assert ",".join(map(str, payload["widths"])) == best["widths"]
    assert payload["macs"] == best["macs"]
    summary = json.loads((shared_run / "summary.json").read_text())
    assert summary["exported"]["widths"] == best["widths"]
    check_exported_forward(shared_run / "arch.json")


def test_layers_and_pairs(shared_run):
    layers = sharing_lab.read_table(shared_run, "layers")
    assert (layers["phi"] > 0).all()
    cos = layers["cos_align"].dropna()
    assert len(cos) > 0 and cos.between(-1 - 1e-6, 1 + 1e-6).all()
    pairs = sharing_lab.read_table(shared_run, "pairs")
    assert -1 in set(pairs["layer"])  # the whole-network row of each pair
    assert ((pairs["a"] >= 0) & (pairs["a"] < pairs["b"]) & (pairs["b"] < 3)).all()


# --- commands on the shared run -----------------------------------------------------------------------------------
def test_beam_json_matches_the_recorded_beam(shared_run):
    result = invoke("beam", shared_run, "--top", "2", "--json")
    assert_ok(result)
    payload = json.loads(result.out)
    rows = payload["top"]
    assert [row["rank"] for row in rows] == [0, 1]
    assert rows[0]["log_prob"] >= rows[1]["log_prob"]
    beams = sharing_lab.read_table(shared_run, "archs").query("source == 'beam'").sort_values("rank")
    for row, (_, recorded) in zip(rows, beams.iterrows()):
        assert ",".join(map(str, row["widths"])) == recorded["widths"]
        assert row["macs"] == recorded["macs"]
        assert row["log_prob"] == pytest.approx(recorded["log_prob"], abs=1e-5)


def test_beam_text_output(shared_run):
    result = invoke("beam", shared_run, "--top", "3")
    assert_ok(result)
    assert len(result.out.strip().splitlines()) == 3


def test_export_rank_to_a_file(shared_run, tmp_path):
    target = tmp_path / "rank1.json"
    result = invoke("export", shared_run, "--rank", "1", "--out", target)
    assert_ok(result)
    payload = json.loads(target.read_text())
    row = sharing_lab.read_table(shared_run, "archs").query("source == 'beam' and rank == 1").iloc[-1]
    assert ",".join(map(str, payload["widths"])) == row["widths"]
    assert payload["macs"] == row["macs"]
    assert payload["rank"] == 1
    check_exported_forward(target)


def test_export_refuses_an_existing_file_and_an_unknown_rank(shared_run, tmp_path):
    target = tmp_path / "taken.json"
    target.write_text("keep me")
    assert_input_error(invoke("export", shared_run, "--rank", "0", "--out", target), "exists")
    assert target.read_text() == "keep me"
    assert_input_error(invoke("export", shared_run, "--rank", "99", "--out", tmp_path / "x.json"), "99")
    assert not (tmp_path / "x.json").exists()


def test_retrain_records_into_the_run(shared_run):
    before = snapshot(shared_run)
    result = invoke("retrain", shared_run, *_sets("retrain.epochs=1"))
    assert_ok(result)
    after = snapshot(shared_run)
    for key, value in before.items():  # nothing existing rewritten
        if key.endswith(".parquet"):
            assert after.get(key) == value, key
    assert f"records: {shared_run}/{{retrain,retrain_curves}}/*.parquet" in result.out
    retrained = sharing_lab.read_table(shared_run, "retrain")
    assert len(retrained) >= 1
    exported = json.loads((shared_run / "arch.json").read_text())
    row = retrained.iloc[-1]
    assert row["widths"] == ",".join(map(str, exported["widths"]))
    assert row["macs"] == exported["macs"]
    assert row["epoch"] == 1
    assert 0 <= row["val_acc"] <= 1 and 0 <= row["test_acc"] <= 1
    assert row["seed"] == 0 and row["rank"] == 0
    # the search's own tables are left alone: no retrain rows among its archs, no retrain scalars
    assert "retrain" not in set(sharing_lab.read_table(shared_run, "archs")["source"])
    assert not any(name.startswith("retrain") for name in sharing_lab.read_table(shared_run, "scalars")["name"])
    curves = sharing_lab.read_table(shared_run, "retrain_curves")
    mine = curves[curves["widths"] == row["widths"]]
    assert set(mine["name"]) == {"train_loss", "val_acc"}
    assert set(mine["epoch"]) == {0}  # one retraining epoch
    assert mine.query("name == 'val_acc'")["value"].iloc[-1] == pytest.approx(row["val_acc"])
    check_tables(shared_run)
    check_tables(shared_run, RETRAIN_TABLES)


def test_retrain_top_n(shared_run):
    result = invoke("retrain", shared_run, "--top", "2", *_sets("retrain.epochs=1"))
    assert_ok(result)
    archs = sharing_lab.read_table(shared_run, "archs")
    beams = archs[archs["source"] == "beam"].sort_values("log_prob", ascending=False)
    retrained = sharing_lab.read_table(shared_run, "retrain")
    assert set(beams["widths"].head(2)) <= set(retrained["widths"])


def test_retrain_an_exported_file_into_a_new_run(shared_run, tmp_path):
    out = tmp_path / "out"
    result = invoke("retrain", shared_run / "arch.json", "--out", out, "--name", "rt",
                    *_sets("retrain.epochs=1", "retrain.batch_size=64", "data.name=synthetic"))
    assert_ok(result)
    retrained = sharing_lab.read_table(out / "rt", "retrain")
    assert len(retrained) == 1
    assert retrained["widths"].iloc[0] == ",".join(map(str, json.loads((shared_run / "arch.json").read_text())
                                                           ["widths"]))
    assert not (out / "rt" / "archs").exists()  # a retrain-only run has no archs table
    assert len(sharing_lab.read_table(out / "rt", "archs")) == 0
    assert set(sharing_lab.read_table(out / "rt", "retrain_curves")["name"]) == {"train_loss", "val_acc"}
    assert (out / "rt" / "config.json").is_file()


def test_retrain_an_exported_file_on_a_mismatched_dataset_is_an_input_error(shared_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("retrain", shared_run / "arch.json", "--out", out, "--name", "rt",
                    *_sets("retrain.epochs=1", "data.name=digits"))
    assert_input_error(result, "channel")
    assert list(out.iterdir()) == []


def test_retrain_an_exported_file_uses_the_data_it_was_searched_on(shared_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(invoke("retrain", shared_run / "arch.json", "--out", out, "--name", "rt", *_sets("retrain.epochs=1")))
    assert len(sharing_lab.read_table(out / "rt", "retrain")) == 1
    assert not (out / "rt" / "archs").exists()


def test_resume_of_a_finished_run_is_refused(shared_run):
    before = snapshot(shared_run)
    assert_input_error(invoke("run-search", "--resume", shared_run), "finished")
    assert snapshot(shared_run) == before


def test_resume_with_changed_options_is_refused(shared_run):
    before = snapshot(shared_run)
    assert_input_error(invoke("run-search", "--resume", shared_run, *_sets("search.epochs=5")), "search.epochs")
    assert snapshot(shared_run) == before


def test_an_existing_run_directory_is_refused_and_untouched(shared_run):
    out = shared_run.parent
    before = snapshot(out)
    result = search(out, shared_run.name, *_sets(*ONE_EPOCH))
    assert_input_error(result, "already exists")
    assert snapshot(out) == before


# --- other schemes and a FLOPs target -----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["overlap:0.5" if name == "overlap" else name
                                    for name in registry.SCHEMES.names()])
def test_search_with_scheme(tmp_path, scheme):
    result = search(tmp_path, "s", "--scheme", scheme, *_sets(*ONE_EPOCH))
    assert_ok(result)
    run = tmp_path / "s"
    assert f"run directory: {run}" in result.out
    assert json.loads((run / "config.json").read_text())["config"]["sharing"]["scheme"] == scheme
    frames = check_tables(run)
    check_probs(frames["probs"])
    assert REQUIRED_SCALARS <= set(frames["scalars"]["name"])
    assert {"sample", "beam"} <= set(frames["archs"]["source"])
    check_exported_forward(run / "arch.json")
    coupled = frames["layers"]["coupled_norm"].dropna()
    assert len(coupled) > 0
    if scheme == "independent":  # disjoint blocks: no gradient lands on another candidate's kernel (§2)
        assert (coupled.abs() < 1e-12).all(), coupled
    else:
        assert (coupled > 0).any()


def test_search_with_a_flops_target(tmp_path):
    target = (MIN_MACS + MAX_MACS) // 2
    result = search(tmp_path, "f", *_sets(*ONE_EPOCH, f"search.flops_target={target}"))
    assert_ok(result)
    run = tmp_path / "f"
    payload = json.loads((run / "config.json").read_text())
    assert payload["config"]["search"]["flops_target"] == target
    frames = check_tables(run)
    beams = frames["archs"].query("source == 'beam'")
    exported = json.loads((run / "arch.json").read_text())
    # the paper's pick among the top-N: the one closest to the target
    assert abs(exported["macs"] - target) == (beams["macs"] - target).abs().min()
    rewards = frames["scalars"].query("name == 'reward'")["value"]
    assert rewards.between(0, 1).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["flops_target"] == target
    assert summary["macs_range"] == [MIN_MACS, MAX_MACS]
    assert_ok(invoke("beam", run, "--top", "2", "--json"))
    check_exported_forward(run / "arch.json")


# --- registries, presets and the library entry point -------------------------------------------------------------
def test_list_json_names_the_registries_and_the_presets():
    result = invoke("list", "--json")
    assert_ok(result)
    payload = json.loads(result.out)
    assert set(payload) == {"models", "datasets", "schemes", "probes", "presets"}
    assert payload["models"] == registry.MODELS.names() and {"resnet20", "resnet56"} <= set(payload["models"])
    assert payload["datasets"] == registry.DATASETS.names() and {"synthetic", "digits"} <= set(payload["datasets"])
    assert payload["schemes"] == registry.SCHEMES.names()
    assert {"ordinal", "independent", "overlap", "transitionary"} <= set(payload["schemes"])
    assert payload["probes"] == registry.PROBES.names() and "sharing" in payload["probes"]
    assert payload["presets"] == preset_names() and "cifar10-resnet20" in payload["presets"]
    text = invoke("list")
    assert_ok(text)
    for name in ("resnet20", "synthetic", "transitionary", "sharing", "cifar10-resnet20"):
        assert name in text.out, name


# The cifar10-resnet20 preset made tiny: synthetic data, two candidates per stage, small batches, one epoch.
PRESET_TINY = [
    "data.name=synthetic", "model.granularity=stage", "model.widths=[4,8]", "data.batch_size=64",
    "data.reward_batch_size=32", "data.eval_batch_size=128", "data.calibration_images=64", "data.eval_images=64",
    "probes.probe_batch=32", "probes.align_archs=2", "search.prob_samples=4", "search.epochs=1",
    "search.warmup_epochs=0", "search.eval_every=1", "search.eval_archs=2", "search.beam_top=2",
]


def test_search_from_a_preset_name_through_the_cli(tmp_path):
    result = invoke("run-search", "--config", "cifar10-resnet20", "--out", tmp_path, "--name", "p",
                    *_sets(*PRESET_TINY))
    assert_ok(result)
    run = tmp_path / "p"
    assert f"run directory: {run}" in result.out
    payload = json.loads((run / "config.json").read_text())
    assert payload["format"] == rundir.CONFIG_FORMAT == 5
    expected = apply_overrides(load_toml("cifar10-resnet20"), PRESET_TINY)
    assert payload["config"] == to_dict(expected)
    # what the preset sets and the overrides do not touch is the preset's
    assert payload["config"]["search"]["lr_milestones"] == [300, 450]
    assert payload["config"]["search"]["weight_decay"] == 2e-4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["steps_per_epoch"] == 256 // 64
    beams = sharing_lab.read_table(run, "archs").query("source == 'beam'")
    assert len(beams) == 2
    assert all(set(map(int, widths.split(","))) <= {4, 8} for widths in beams["widths"])
    check_exported_forward(run / "arch.json")


def test_run_search_library_entry_point(tmp_path):
    logged: list[str] = []
    run = sharing_lab.run_search(None, out=tmp_path, name="x", overrides=[*TINY, *ONE_EPOCH], log=logged.append)
    assert run == tmp_path / "x"
    assert logged  # progress went through ``log``
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"] == "x" and summary["epochs"] == 1
    assert summary["steps_per_epoch"] == 256 // 64 == summary["steps"]
    payload = json.loads((run / "config.json").read_text())
    assert payload["format"] == rundir.CONFIG_FORMAT == 5 and "code_revision" in payload
    assert payload["config"] == to_dict(apply_overrides(Config(), [*TINY, *ONE_EPOCH]))
    scalars = sharing_lab.read_table(run, "scalars")
    steps = scalars.query("name == 'steps_per_epoch'")
    assert steps["value"].tolist() == [256 // 64] and steps["epoch"].tolist() == [0]  # one row per epoch
    assert (run / "arch.json").is_file()


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.fixture
def out_dir(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an unrelated file")
    return out


def _bad_toml(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text("[search\nepochs = 3\n")
    return path


BAD_INPUT = {
    "unknown-model": (_sets("model.name=nosuchnet"), "nosuchnet"),
    "unknown-scheme": (["--scheme", "nosuchscheme"], "nosuchscheme"),
    "bad-overlap": (["--scheme", "overlap:2"], "overlap"),
    "unknown-dataset": (_sets("data.name=nosuchdata"), "nosuchdata"),
    "unknown-key": (_sets("search.nosuchkey=1"), "nosuchkey"),
    "unknown-section": (_sets("nosuchsection.epochs=1"), "nosuchsection"),
    "epochs-quoted-string": (_sets('search.epochs="abc"'), "search.epochs"),
    "epochs-bare-word": (_sets("search.epochs=abc"), "search.epochs"),
    "epochs-list": (_sets("search.epochs=[1]"), "search.epochs"),
    "epochs-float": (_sets("search.epochs=2.5"), "search.epochs"),
    "set-without-equals": (["--set", "search.epochs"], "key=value"),
    "malformed-toml": (["--config", "{bad_toml}"], "TOML"),
    "missing-config": (["--config", "{tmp}/absent.toml"], "absent.toml"),
    "widths-empty": (_sets("model.widths=[]"), "empty"),
    "widths-zero": (_sets("model.widths=[0,2]"), "positive"),
    "widths-negative": (_sets("model.widths=[-2,4]"), "positive"),
    "widths-unsorted": (_sets("model.widths=[4,2]"), "increasing"),
    "widths-duplicate": (_sets("model.widths=[2,2]"), "increasing"),
    "flops-below-smallest": (_sets(f"search.flops_target={MIN_MACS - 1}"), "below the smallest"),
    "flops-zero": (_sets("search.flops_target=0"), "below the smallest"),
    "flops-negative": (_sets("search.flops_target=-5"), "below the smallest"),
    "cifar10-missing-dir": (_sets("data.name=cifar10", "data.dir={tmp}/no-such-cifar"), "no-such-cifar"),
    "cifar10-no-dir": (_sets("data.name=cifar10"), "cifar10"),
    "warmup-over-epochs": (_sets("search.epochs=2", "search.warmup_epochs=3"), "warmup_epochs"),
    "zero-epochs": (_sets("search.epochs=0", "search.warmup_epochs=0"), "epochs"),
    "batch-over-train-split": (_sets("data.batch_size=100000"), "batch size"),
    "unknown-device": (["--device", "nosuchdevice"], "nosuchdevice"),
    "unknown-granularity": (_sets("model.granularity=nosuchgran"), "nosuchgran"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_creates_nothing(case, tmp_path, out_dir):
    args, fragment = BAD_INPUT[case]
    args = [a.format(bad_toml=_bad_toml(tmp_path), tmp=tmp_path) for a in args]
    fragment = fragment.format(tmp=tmp_path)
    before = snapshot(out_dir)
    result = search(out_dir, "bad", *_sets(*ONE_EPOCH), *args)
    assert_input_error(result, fragment)
    assert snapshot(out_dir) == before


def test_resume_on_a_directory_that_is_not_a_run(tmp_path, out_dir):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("x")
    before, before_out = snapshot(not_a_run), snapshot(out_dir)
    assert_input_error(invoke("run-search", "--out", out_dir, "--resume", not_a_run), "not a run directory")
    assert snapshot(not_a_run) == before
    assert snapshot(out_dir) == before_out
    assert_input_error(invoke("run-search", "--out", out_dir, "--resume", tmp_path / "absent"))
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("command", [["beam"], ["export"], ["retrain"]])
def test_commands_on_a_directory_that_is_not_a_run(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_input_error(invoke(*command, empty))
    assert list(empty.iterdir()) == []


# Bad values that fit the config types but cannot run: refused before the run starts (they once crashed part-way).
UNVALIDATED = {
    "probes.every_epochs=0": "ZeroDivisionError in SharingProbe.end_of_epoch ((epoch + 1) % every_epochs)",
    "sharing.transition_every=0": "ZeroDivisionError in Search._train_epoch (step % transition_every)",
    "data.reward_batch_size=0": "RuntimeError from torch.multinomial (NaN controller probabilities after a "
                                "REINFORCE step on the mean accuracy of 0 images)",
    "search.prob_samples=0": "RuntimeError 'stack expects a non-empty TensorList' in Search.probability_rows",
}


@pytest.mark.parametrize("override", [
    pytest.param(key, id=key) for key in UNVALIDATED
])
def test_unvalidated_values_are_input_errors(override, out_dir):
    result = search(out_dir, "bad", *_sets(*ONE_EPOCH, "data.batch_size=128", override))
    assert_input_error(result)


def test_cli_subprocess_bad_input(tmp_path, out_dir):
    """The real entry point: exit status 2, one line on stderr, no traceback, nothing created."""
    before = snapshot(out_dir)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-m", "sharing_lab.cli", "run-search", "--out", str(out_dir), "--name", "x",
         *_sets("data.name=synthetic", "model.name=nosuchnet")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nosuchnet" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(out_dir) == before
