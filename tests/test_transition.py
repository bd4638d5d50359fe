"""How a search's transforms move is one setting, ``sharing.transition`` (sharing_lab.aps.transition): a number is
the constant rate τ, a shape the Φ schedule. τ is never silently ignored: the old key is refused in one line naming
the new one, and a constant rate acts on the search."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from test_search_cli import _sets, assert_input_error, assert_ok, invoke, search

import sharing_lab
from sharing_lab.aps.schemes import SharingScheme, get_scheme
from sharing_lab.aps.transition import Transition, check_transition, phase_position, transition_of
from sharing_lab.config import Config, SharingConfig, resolve
from sharing_lab.errors import InputError
from sharing_lab.registry import PRESETS, register_preset

SHORT = ["search.epochs=4", "search.warmup_epochs=1", "search.eval_every=2", "seed=3"]


@pytest.mark.parametrize("key", ["sharing.tau=1e-4", "sharing.phi_schedule=none"])
def test_the_keys_of_version_0_2_are_refused_in_one_line_naming_sharing_transition(tmp_path, key):
    assert_input_error(search(tmp_path, "x", *_sets(key)), key.partition("=")[0], "sharing.transition")
    assert not (tmp_path / "x").exists()


def test_a_transition_that_is_neither_a_rate_nor_a_schedule_is_refused(tmp_path):
    assert_input_error(search(tmp_path, "x", *_sets("sharing.transition=sideways")), "sharing.transition")
    assert_input_error(search(tmp_path, "y", *_sets("sharing.transition=-1e-4")), "sharing.transition")


def test_the_setting_says_how_the_transforms_move():
    scheduled = transition_of(SharingConfig(), get_scheme("transitionary"))
    assert scheduled == Transition(None, "cosine", 0.8, 0.6, 1)
    assert scheduled.describe() == "Φ schedule cosine (0.8 at 0.6)"
    rate = transition_of(SharingConfig(transition=1e-4), get_scheme("transitionary"))
    assert rate.rate == 1e-4 and rate.schedule is None and rate.describe() == "τ = 0.0001"
    assert transition_of(SharingConfig(transition=1e-4), get_scheme("ordinal")) is None  # the scheme's own flag


def test_a_schedule_cannot_steer_a_scheme_that_moves_its_own_way():
    class OwnMove(SharingScheme):
        def move(self, layers, tau, fused=None):
            return None

    own = OwnMove("own", overlap=1.0, sigma=1e-3, transition=True)
    with pytest.raises(InputError, match="sharing.transition=τ"):
        check_transition(SharingConfig(), own)
    check_transition(SharingConfig(transition=1e-4), own)  # a constant rate is its own move's


def test_the_search_phase_position_is_shared_by_loop_records_and_replay():
    assert phase_position(10 * 4, 10, 20, 4) == 0.0
    assert phase_position(20 * 4, 10, 20, 4) == 1.0
    assert phase_position(15 * 4, 10, 20, 4) == 0.5
    assert phase_position(0, 10, 20, 4) < 0  # warm-up


def _phi_and_tau(run: Path) -> tuple[float, set[float]]:
    scalars = sharing_lab.read_table(run, "scalars")
    phi = float(scalars.query("name == 'phi'")["value"].iloc[-1])
    return phi, set(scalars.query("name == 'tau'")["value"])


def test_a_constant_rate_acts_and_is_recorded(tmp_path):
    """The rate is what the transforms move at: a larger τ ends at a lower Φ, each run records its own τ, and the
    default Φ schedule (no rate) records the realised step sizes and targets instead."""
    ends = {}
    for tau in (1e-6, 1e-3):
        assert_ok(search(tmp_path, f"t{tau:g}", *_sets(*SHORT, f"sharing.transition={tau}")))
        phi, taus = _phi_and_tau(tmp_path / f"t{tau:g}")
        assert taus == {tau}
        ends[tau] = phi
    assert ends[1e-3] < ends[1e-6]
    assert_ok(search(tmp_path, "scheduled", *_sets(*SHORT)))
    scalars = sharing_lab.read_table(tmp_path / "scheduled", "scalars")
    assert {"tau", "phi_target"} <= set(scalars["name"])
    assert not math.isclose(_phi_and_tau(tmp_path / "scheduled")[0], ends[1e-3])


def test_a_bare_name_is_a_preset_and_a_path_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10-resnet20").write_text("[search]\nepochs = 30\n")  # named like a preset: no shadowing
    assert resolve("cifar10-resnet20").model.name == "resnet20"
    assert resolve("cifar10-resnet20").search.epochs == 600
    assert resolve("./cifar10-resnet20").search.epochs == 30
    (tmp_path / "mine.toml").write_text("[search]\nepochs = 21\n")
    assert resolve("mine.toml", ["search.warmup_epochs=7"]).search.epochs == 21
    with pytest.raises(InputError, match="unknown preset 'mine'"):
        resolve("mine")
    with pytest.raises(InputError, match="does not exist"):
        resolve("missing.toml")


def test_presets_are_a_registry_that_list_shows_and_plugins_extend(monkeypatch):
    monkeypatch.setattr(PRESETS, "_items", dict(PRESETS._items))  # a registration that ends with the test

    @register_preset("tiny-digits")
    def tiny() -> str:
        """The embedded search, three epochs."""
        return "[search]\nepochs = 3\nwarmup_epochs = 1\n"

    assert resolve("tiny-digits").search.epochs == 3
    result = invoke("list")
    assert_ok(result)
    assert "tiny-digits" in result.out and "The embedded search, three epochs." in result.out
    assert "cifar10-resnet20" in result.out and "The paper's CIFAR-10 ResNet-20 search" in result.out


def test_resolve_checks_what_it_returns():
    with pytest.raises(InputError, match="search.epochs"):
        resolve(None, ["search.epochs=0"])
    config = dataclasses.replace(Config(), seed=5)
    assert resolve(config, ["search.epochs=30"]).seed == 5
