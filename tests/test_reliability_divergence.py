"""Divergence (issue 15): detected on the loss (non-finite or above ``LOSS_LIMIT × ln(classes)``), on the gradients'
global norm, on the BN running statistics and on the controller; the kept checkpoint is the last good state (a
state with NaN or inf is never written); a diverged run may be resumed with new ``search.lr``,
``search.controller_lr`` or a constant ``sharing.transition``, and the change is recorded in ``config.json``. NaN
equals NaN when
configurations are compared.

The detection tests open a tiny search in-process and break one thing at a time; the CLI tests run the tiny
reliability configuration through :func:`sharing_lab.cli.main`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_reliability import NAME, TINY, _sets, invoke, snapshot

import sharing_lab
from sharing_lab.compute.distributed import Group
from sharing_lab.config import RESUME_CHANGEABLE, Config, apply_overrides, check, differences
from sharing_lab.errors import InputError
from sharing_lab.runs import checkpoints, rundir
from sharing_lab.search import checkpointing, guard, loop, session

SHORT = ("search.epochs=2", "search.warmup_epochs=1")


def _args(out: Path, *extra: str) -> list[str]:
    return ["run-search", "--out", str(out), "--name", NAME, "--seed", "0", *_sets(*TINY, *SHORT), *extra]


def _open(tmp_path: Path, *overrides: str) -> session.Search:
    config = apply_overrides(Config(), [*TINY, *SHORT, *overrides])
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    search = session.open_search(config, run_dir, log=lambda message: None)
    checkpointing.resume(search)  # the initial checkpoint: the last good state
    return search


@dataclasses.dataclass(frozen=True)
class PretendGroup(Group):
    """One process that the loop takes for one of several: no per-step checks, the device-side counts read at the
    epoch's end, as on a GPU (none was at hand to test on)."""

    @property
    def active(self) -> bool:
        return True

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def any(self, flag: bool) -> bool:
        return flag

    def broadcast_ints(self, values, length: int) -> tuple[int, ...]:
        return tuple(values)

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        return items

    def barrier(self) -> None:
        pass


# --- detection ----------------------------------------------------------------------------------------------------
def test_an_exploded_finite_loss_is_divergence(tmp_path, monkeypatch):
    search = _open(tmp_path)
    monkeypatch.setattr(guard, "LOSS_LIMIT", 1e-6)  # every real loss is now "exploded"
    with pytest.raises(guard.TrainingDiverged, match=r"the loss is .* at epoch 0, step 0 \(limit"):
        loop.train_epoch(search)
    assert json.loads((search.run_dir / rundir.DIVERGED).read_text())["step"] == 0


def test_a_non_finite_gradient_norm_is_divergence(tmp_path):
    search = _open(tmp_path)
    weight = search.supernet.stem.weight
    weight.register_hook(lambda grad: grad * math.inf)  # finite loss, infinite gradient
    with pytest.raises(guard.TrainingDiverged, match="the gradients' global norm is"):
        loop.train_epoch(search)


def test_without_per_step_checks_the_epoch_end_counts_catch_the_loss_and_the_gradients(tmp_path, monkeypatch):
    search = _open(tmp_path)
    search.group = search.guard.group = PretendGroup()
    steps = search.state.steps_per_epoch
    monkeypatch.setattr(guard, "LOSS_LIMIT", 1e-6)
    with pytest.raises(guard.TrainingDiverged, match=f"above .* at {steps} steps of epoch 0"):
        loop.train_epoch(search)
    assert search.state.step == steps  # the whole epoch ran: nothing waited on the device
    monkeypatch.setattr(guard, "LOSS_LIMIT", 1e3)
    search.supernet.stem.weight.register_hook(lambda grad: grad * math.inf)
    with pytest.raises(guard.TrainingDiverged, match=f"global norm was not finite at {steps} steps of epoch 0"):
        loop.train_epoch(search)


def test_non_finite_batchnorm_statistics_are_divergence(tmp_path):
    search = _open(tmp_path)
    search.supernet.stem.bns[0].running_var.fill_(math.inf)  # not used by the training forward: the loss is fine
    with pytest.raises(guard.TrainingDiverged, match="BatchNorm running statistics are not finite after epoch 0"):
        loop.train_epoch(search)


def test_a_diverged_controller_is_divergence(tmp_path):
    search = _open(tmp_path, "search.warmup_epochs=0")
    with torch.no_grad():
        for parameter in search.state.controller.parameters():
            parameter.fill_(math.nan)
    with pytest.raises(guard.TrainingDiverged, match="the controller's weights are not finite"):
        loop.train_epoch(search)


def test_a_state_with_nan_is_never_checkpointed(tmp_path):
    search = _open(tmp_path)
    before = (search.run_dir / rundir.CHECKPOINT).read_bytes()
    with torch.no_grad():
        search.supernet.classifier.weight[0, 0] = math.nan
    search.state.epoch = 1
    with pytest.raises(guard.TrainingDiverged, match=r"non-finite values in supernet\.classifier\.weight"):
        checkpointing.checkpoint(search)
    assert (search.run_dir / rundir.CHECKPOINT).read_bytes() == before
    with pytest.raises(InputError, match="refusing to checkpoint"):
        checkpoints.save_checkpoint(search.run_dir, search.state.state_dict())
    assert (search.run_dir / rundir.CHECKPOINT).read_bytes() == before


def test_non_finite_lists_the_bad_entries():
    state = {"a": torch.ones(3), "b": {"c": torch.tensor([1.0, math.inf])}, "d": [1.0, math.nan], "e": None,
             "f": torch.tensor([1, 2]), "g": "text"}
    assert checkpoints.non_finite(state) == ["d[1]", "b.c"]


# --- configuration ------------------------------------------------------------------------------------------------
def test_differences_treats_nan_as_equal_to_nan():
    search = dataclasses.replace(Config().search, flops_target=math.nan)
    config = dataclasses.replace(Config(), search=search)
    assert differences(config, dataclasses.replace(config)) == []
    assert differences(config, Config()) == ["search.flops_target"]
    assert differences({"m": {"x": [1.0, math.nan]}}, {"m": {"x": [1.0, math.nan]}}) == []
    assert differences({"m": {"x": 1}}, {"m": {"x": 1, "y": 2}}) == ["m.y"]
    with pytest.raises(InputError, match="search.flops_target must be a finite number"):
        check(config)


def test_the_keys_a_diverged_resume_may_change():
    assert RESUME_CHANGEABLE == ("search.lr", "search.controller_lr", "sharing.transition")


# --- the CLI: diverge, then resume at a lower learning rate -------------------------------------------------------
@pytest.fixture(scope="module")
def exploded(tmp_path_factory) -> tuple[Path, str]:
    """A run at search.lr=1e6: a finite, exploded loss at step 1 (it was once checkpointed with inf BN variances)."""
    out = tmp_path_factory.mktemp("exploded")
    code, err = invoke(*_args(out, *_sets("search.lr=1e6", "sharing.transition=1e-4")))
    assert code == 2, err
    return out / NAME, err


@pytest.fixture
def exploded_copy(exploded, tmp_path) -> Path:
    target = tmp_path / "copy" / NAME
    shutil.copytree(exploded[0], target)
    return target


def test_the_exploded_run_keeps_a_finite_checkpoint_and_says_how_to_resume(exploded):
    run, err = exploded
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "training diverged: the loss is" in lines[0], err
    assert f"sharing-lab run-search --resume {run} --set search.lr=100000" in lines[0]
    state = checkpoints.load_file(run / rundir.CHECKPOINT)
    assert state["epoch"] == 0 and checkpoints.non_finite(state) == []
    assert (run / rundir.DIVERGED).is_file()


def test_a_diverged_run_resumes_with_a_lower_learning_rate_and_records_it(exploded_copy):
    run = exploded_copy
    code, err = invoke("run-search", "--resume", run, *_sets("search.lr=0.05", "sharing.transition=2e-5"))
    assert code == 0, err
    config, payload = rundir.read_config(run)
    assert config.search.lr == 0.05 and config.sharing.transition == 2e-5
    (resumed,) = payload["resumes"]
    assert resumed["changed"] == {"search.lr": {"from": 1e6, "to": 0.05},
                                  "sharing.transition": {"from": 1e-4, "to": 2e-5}}
    assert resumed["epoch"] == 0 and "the loss is" in resumed["diverged"]["message"]
    assert not (run / rundir.DIVERGED).exists()  # the next resume may not change them again
    lrs = sharing_lab.read_table(run, "scalars").query("name == 'lr'")["value"]
    assert len(lrs) == 2 and lrs.max() <= 0.05  # the new rate was used, on its cosine schedule
    assert (run / "summary.json").is_file()


def test_a_diverged_run_may_not_change_other_keys(exploded_copy):
    before = snapshot(exploded_copy)
    code, err = invoke("run-search", "--resume", exploded_copy, *_sets("search.lr=0.05", "search.epochs=3"))
    assert code == 2 and "the given options change search.epochs from the run's config.json" in err, err
    assert snapshot(exploded_copy) == before


def test_a_run_that_did_not_diverge_may_not_change_the_learning_rate(exploded_copy):
    (exploded_copy / rundir.DIVERGED).unlink()
    before = snapshot(exploded_copy)
    code, err = invoke("run-search", "--resume", exploded_copy, *_sets("search.lr=0.05"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "may change only when resuming a run that diverged" in lines[0], err
    assert snapshot(exploded_copy) == before


def test_a_diverged_resume_may_not_turn_a_rate_into_a_schedule(exploded_copy):
    code, err = invoke("run-search", "--resume", exploded_copy, *_sets("sharing.transition=cosine"))
    assert code == 2 and "sharing.transition may change from one constant rate to another only" in err, err
