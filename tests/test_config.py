"""The typed run configuration: defaults, JSON round trip, TOML files, --set overrides, differences."""

from __future__ import annotations

import dataclasses
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from sharing_lab.config import (
    Config,
    apply_overrides,
    check,
    differences,
    from_dict,
    load_toml,
    parse_override,
    preset_names,
    to_dict,
)
from sharing_lab.errors import InputError
from sharing_lab.runs import rundir

FIXTURES = Path(__file__).parent / "fixtures"


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


# --- defaults and the JSON round trip --------------------------------------------------------------------------
def test_defaults_round_trip_through_dict_and_json():
    config = Config()
    mapping = to_dict(config)
    assert from_dict(mapping) == config
    assert from_dict(json.loads(json.dumps(mapping))) == config


def test_to_dict_is_nested_plain_json():
    mapping = to_dict(Config())
    assert set(mapping) >= {"model", "data", "search", "sharing", "probes", "retrain", "seed", "device"}
    assert mapping["model"]["widths"] == [1, 2, 3, 4]  # tuples become lists
    assert mapping["search"]["lr_milestones"] == [33, 40]
    assert json.loads(json.dumps(mapping)) == mapping


def test_defaults_are_the_embedded_digits_search():
    config = Config()
    assert config.data.name == "digits"
    assert config.model.widths == (1, 2, 3, 4) and config.model.granularity == "stage"  # the ground-truth space
    assert config.sharing.scheme == "transitionary"
    assert config.search.flops_target is None
    assert config.device == "auto"


def test_non_default_config_round_trips():
    config = apply_overrides(Config(), [
        "model.widths=[2, 4, 6]", "model.multipliers=[0.5, 1]", "search.lr_milestones=[10, 20]",
        "search.flops_target=2.5e6", "data.dir=/some/where", "search.nesterov=true", "seed=7", "device=cpu",
        "sharing.scheme=overlap:0.5",
    ])
    assert config.model.multipliers == (0.5, 1.0)
    restored = from_dict(json.loads(json.dumps(to_dict(config))))
    assert restored == config
    assert isinstance(restored.model.widths, tuple)
    assert isinstance(restored.search.lr_milestones, tuple)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().seed = 3  # type: ignore[misc]


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    mapping = to_dict(Config())
    mapping["search"]["nope"] = 1
    with pytest.raises(InputError, match="nope"):
        from_dict(mapping)
    mapping = to_dict(Config())
    mapping["search"]["epochs"] = "ten"
    with pytest.raises(InputError, match="search.epochs"):
        from_dict(mapping)


# --- TOML files ------------------------------------------------------------------------------------------------
def test_load_toml_with_nested_sections(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'seed = 3\n'
        'device = "cpu"\n'
        '[model]\nname = "resnet56"\nwidths = [2, 4]\ngranularity = "block"\n'
        '[search]\nepochs = 5\nwarmup_epochs = 2\nflops_target = 1000000\nlr = 0.05\n'
        '[sharing]\nscheme = "overlap:0.25"\n'
        '[data]\nname = "synthetic"\n'
    )
    config = load_toml(path)
    assert config.seed == 3 and config.device == "cpu"
    assert config.model.name == "resnet56"
    assert config.model.widths == (2, 4)
    assert config.model.granularity == "block"
    assert config.search.epochs == 5 and config.search.warmup_epochs == 2
    assert config.search.flops_target == 1e6 and isinstance(config.search.flops_target, float)
    assert config.search.lr == 0.05
    assert config.sharing.scheme == "overlap:0.25"
    assert config.data.name == "synthetic"
    # untouched keys keep their defaults
    assert config.search.controller_lr == Config().search.controller_lr
    assert config.retrain == Config().retrain


def test_load_toml_over_a_base(tmp_path):
    path = tmp_path / "more.toml"
    path.write_text("[search]\nepochs = 9\n")
    base = apply_overrides(Config(), ["seed=5", "search.epochs=2"])
    config = load_toml(path, base)
    assert config.seed == 5 and config.search.epochs == 9


def test_load_toml_dotted_keys_are_nested(tmp_path):
    path = tmp_path / "dotted.toml"
    path.write_text("search.epochs = 4\nmodel.widths = [1, 2]\n")
    config = load_toml(path)
    assert config.search.epochs == 4 and config.model.widths == (1, 2)


@pytest.mark.parametrize("text, fragment", [
    ("[search\nepochs = 3\n", "TOML"),  # malformed
    ("[search]\nepochs = \n", "TOML"),  # malformed value
    ("[search]\nepochs = 3\nepochs = 4\n", "TOML"),  # duplicate key
    ("[search]\nepoch = 3\n", "search.epoch"),  # unknown key
    ("[nosection]\nx = 1\n", "nosection"),  # unknown section
    ("epochs = 3\n", "epochs"),  # a section field at the top level
    ("model = 3\n", "model"),  # a section given a scalar
    ('[search]\nepochs = "3"\n', "search.epochs"),  # wrong type
    ("[search]\nepochs = 3.0\n", "search.epochs"),  # float for an int
    ("[search]\nnesterov = 1\n", "search.nesterov"),  # int for a bool
    ('[model]\nwidths = [2, "a"]\n', "model.widths"),  # wrong item type
    ("[model]\nwidths = 4\n", "model.widths"),  # scalar for a list
])
def test_load_toml_errors(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        load_toml(path)


def test_load_toml_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_toml(tmp_path / "absent.toml")
    with pytest.raises(InputError):
        load_toml(tmp_path)  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        load_toml(binary)


# --- --set overrides -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, key, value", [
    ("search.epochs=7", "search.epochs", 7),
    (" search.epochs = 7 ", "search.epochs", 7),
    ("model.widths=[2, 4, 8]", "model.widths", [2, 4, 8]),
    ("search.lr=0.05", "search.lr", 0.05),
    ("search.flops_target=2e6", "search.flops_target", 2e6),
    ("search.flops_target=1_000_000", "search.flops_target", 1_000_000),
    ('data.name="synthetic"', "data.name", "synthetic"),
    ("data.name='synthetic'", "data.name", "synthetic"),
    ("data.name=synthetic", "data.name", "synthetic"),  # bare word: a string
    ("sharing.scheme=overlap:0.5", "sharing.scheme", "overlap:0.5"),
    ("data.dir=/data/cifar-10-batches-py", "data.dir", "/data/cifar-10-batches-py"),
    ("data.dir=/a=b", "data.dir", "/a=b"),  # only the first '=' splits
    ("search.flops_target=none", "search.flops_target", None),
    ("search.flops_target=None", "search.flops_target", None),
    ("search.flops_target=null", "search.flops_target", None),
    ("search.nesterov=true", "search.nesterov", True),
    ("search.nesterov=false", "search.nesterov", False),
])
def test_parse_override_values(text, key, value):
    assert parse_override(text) == (key, value)


def test_apply_overrides_coerces_to_field_types():
    config = apply_overrides(Config(), [
        "model.widths=[2, 4]", "search.lr=1", "search.flops_target=3000000", "data.name=synthetic",
        "data.dir=/tmp/x", "search.flops_target=none", "data.image_size=16", "data.image_size=none", "seed=11",
        "model.granularity=none",
    ])
    assert config.model.widths == (2, 4)
    assert config.search.lr == 1.0 and isinstance(config.search.lr, float)
    assert config.search.flops_target is None  # later overrides win
    assert config.data.name == "synthetic" and config.data.dir == "/tmp/x"
    assert config.data.image_size is None
    assert config.model.granularity is None
    assert config.seed == 11


def test_apply_overrides_float_into_optional_float():
    config = apply_overrides(Config(), ["search.flops_target=25000"])
    assert config.search.flops_target == 25000.0 and isinstance(config.search.flops_target, float)


def test_apply_overrides_does_not_mutate_the_input():
    base = Config()
    apply_overrides(base, ["search.epochs=3"])
    assert base == Config()


@pytest.mark.parametrize("text", [
    "search.epochs=abc",  # bare word for an int
    'search.epochs="abc"',
    "search.epochs=[1]",
    "search.epochs=1.5",
    "search.epochs=true",  # bools are not ints
    "search.epochs=none",  # not optional
    "search.lr=fast",
    "search.nesterov=1",
    "model.widths=4",
    "model.widths=[2, 4.5]",
    "model.widths=[2, \"a\"]",
    "model.widths=[2, 4",  # malformed TOML list
    'data.name="synthetic',  # unterminated string
    "data.name={a = 1}",
    "data.name=3",
    "search.epochs",  # no '='
    "=3",  # no key
    "nosuch=1",
    "search.nosuch=1",
    "nosection.epochs=1",
    "model=resnet20",  # a section is not a value
    "search.epochs.x=1",  # too deep
    "seed.x=1",
])
def test_apply_overrides_errors(text):
    with pytest.raises(InputError):
        apply_overrides(Config(), [text])


def test_unknown_key_message_lists_the_section_fields():
    with pytest.raises(InputError, match="epochs"):
        apply_overrides(Config(), ["search.epoch=3"])


def test_integer_meta_width_can_be_set_naturally(tmp_path):
    config = apply_overrides(Config(), ["model.meta=40"])
    assert str(config.model.meta) == "40"
    path = tmp_path / "meta.toml"
    path.write_text("[model]\nmeta = 40\n")
    assert str(load_toml(path).model.meta) == "40"


def test_quoted_integer_meta_width_is_accepted():
    assert apply_overrides(Config(), ['model.meta="40"']).model.meta == "40"


# --- differences -----------------------------------------------------------------------------------------------
def test_differences():
    base = Config()
    assert differences(base, base) == []
    assert differences(base, Config()) == []
    changed = apply_overrides(base, ["search.epochs=3", "model.widths=[2, 4]", "search.flops_target=1e6",
                                     "seed=2"])
    assert set(differences(base, changed)) == {"search.epochs", "model.widths", "search.flops_target", "seed"}
    assert set(differences(changed, base)) == set(differences(base, changed))
    # setting a key to its default is no difference
    assert differences(base, apply_overrides(base, ["search.epochs=45", "data.name=digits"])) == []


# --- presets shipped in the package ----------------------------------------------------------------------------
def test_load_toml_loads_a_shipped_preset_by_name():
    config = load_toml("cifar10-resnet20")
    assert config.model.name == "resnet20" and config.data.name == "cifar10"
    assert config.model.widths == (16, 32, 64, 96) and config.model.granularity == "conv"
    assert config.search.epochs == 600 and config.search.lr_milestones == (300, 450)
    assert config != Config()
    # the same as reading the package's file by path
    path = resources.files("sharing_lab") / "presets" / "cifar10-resnet20.toml"
    assert load_toml(str(path)) == config


def test_every_preset_loads_and_passes_check():
    names = preset_names()
    assert "cifar10-resnet20" in names and names == sorted(names)
    for name in names:
        config = load_toml(name)
        check(config)
        assert config != Config(), name


def test_an_unknown_preset_name_is_refused():
    with pytest.raises(InputError, match="unknown preset 'no-such-preset'"):
        load_toml("no-such-preset")


# --- config.json formats ---------------------------------------------------------------------------------------
def _flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_a_format_1_config_json_written_before_the_redesign_is_read(tmp_path):
    shutil.copy(FIXTURES / "config-v1.json", tmp_path / rundir.CONFIG)
    config, payload = rundir.read_config(tmp_path)
    assert "format" not in payload  # format 1: no format key
    old = _flat(payload["config"])
    defaults = _flat(to_dict(Config()))
    new_keys = set(defaults) - set(old)
    assert new_keys >= {"search.bn_evaluation", "probes.names"}  # the keys added by the redesign (or later)
    assert not set(old) - set(defaults) - {"sharing.tau"}  # format 5 has sharing.transition instead
    read = _flat(to_dict(config))
    assert {key: read[key] for key in old if key != "sharing.tau"} == {key: old[key] for key in old
                                                                      if key != "sharing.tau"}
    # the fixture holds the defaults of its time; the embedded space, its schedule, τ and retraining changed since
    changed = {"model.widths": [4, 8, 12, 16], "sharing.tau": 1e-5, "retrain.epochs": 40, "search.epochs": 60,
               "search.warmup_epochs": 20, "search.eval_every": 10, "data.calibration_images": 2048,
               "search.lr_schedule": "cosine", "search.lr_milestones": []}
    assert {key: old[key] for key in changed} == changed
    assert {key: old[key] for key in old if key not in changed} == {key: defaults[key] for key in old
                                                                     if key not in changed}
    # new keys: defaults, but a run before format 4 had no Φ schedule: it moved P/Q at its constant τ
    assert read["sharing.transition"] == 1e-5
    assert {key: read[key] for key in new_keys - {"sharing.transition"}} == {
        key: defaults[key] for key in new_keys - {"sharing.transition"}}
    check(config)


def test_a_written_config_json_has_format_5_and_reads_back(tmp_path):
    config = apply_overrides(Config(), ["seed=4", "probes.names=[]", "search.bn_evaluation=batch"])
    run_dir = rundir.create(tmp_path, "r", config, {"seed": 4})
    payload = json.loads((run_dir / rundir.CONFIG).read_text())
    assert payload["format"] == rundir.CONFIG_FORMAT == 5
    assert "code_revision" in payload
    assert rundir.read_config(run_dir)[0] == config


@pytest.mark.parametrize("version, sharing, transition", [
    (3, {"tau": 6.5e-5}, 6.5e-5),  # before the Φ schedule: the constant τ
    (4, {"tau": 1.4e-4, "phi_schedule": None, "phi_fraction": 0.8, "phi_at": 0.6}, 1.4e-4),
    (4, {"tau": 6.5e-5, "phi_schedule": "cosine", "phi_fraction": 0.8, "phi_at": 0.6}, "cosine"),
])
def test_formats_3_and_4_read_their_transition(tmp_path, version, sharing, transition):
    run_dir = rundir.create(tmp_path, "r", Config(), {"seed": 0})
    payload = json.loads((run_dir / rundir.CONFIG).read_text())
    payload["format"] = version
    payload["config"]["sharing"] = {"scheme": "transitionary", "transition_every": 1, **sharing}
    (run_dir / rundir.CONFIG).write_text(json.dumps(payload))
    assert rundir.read_config(run_dir)[0].sharing.transition == transition


def test_a_config_json_of_a_newer_format_is_refused(tmp_path):
    payload = {"format": 99, "config": to_dict(Config()), "run": tmp_path.name}
    (tmp_path / rundir.CONFIG).write_text(json.dumps(payload))
    with pytest.raises(InputError, match="format"):
        rundir.read_config(tmp_path)
