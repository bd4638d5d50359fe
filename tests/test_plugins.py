"""A user's own model, dataset and sharing scheme, registered from a plugin module and run through the CLI
(``sharing-lab --plugin FILE …``) without editing the package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from sharing_lab.errors import InputError
from sharing_lab.plugins import load_plugin
from sharing_lab.registry import Registry

PLUGIN = textwrap.dedent('''
    import torch

    from sharing_lab import register_dataset, register_model, register_scheme
    from sharing_lab.data import DataBundle, Split
    from sharing_lab.space.layout import ModelSpec
    from sharing_lab.space.models.resnet import resnet_layout
    from sharing_lab.aps.schemes import SharingScheme, Transforms
    from sharing_lab.aps.sharing import random_semi_orthogonal


    @register_model("toynet")
    def toynet():
        """A one-stage, one-block ResNet."""
        def build(request):
            return resnet_layout("toynet", request, (8,), 1, stem_kernel=3, stem_stride=1, stem_pool=False)
        return ModelSpec("toynet", build, granularity="stage", image_size=6, num_classes=3, widths=(2, 4))


    @register_dataset("toydata")
    def toydata(directory, seed, image_size, workers):
        """Three classes of 1x6x6 noise around fixed means."""
        g = torch.Generator().manual_seed(seed)
        def split(n):
            labels = torch.arange(n) % 3
            images = labels.view(-1, 1, 1, 1).float() + 0.3 * torch.randn(n, 1, 6, 6, generator=g)
            return Split(images, labels)
        return DataBundle("toydata", 3, split(48), split(24), split(24))


    class RandomOrthogonal(SharingScheme):
        def make(self, widths, meta_width, generator=None):
            return Transforms(tuple(random_semi_orthogonal(meta_width, w, generator).float() for w in widths), None)


    @register_scheme("randorth")
    def randorth(argument):
        """Random orthonormal transforms, fixed."""
        return RandomOrthogonal("randorth", overlap=1.0)
''')

TINY = ["search.epochs=2", "search.warmup_epochs=1", "search.eval_every=1", "search.eval_archs=2",
        "search.beam_top=2", "search.prob_samples=2", "data.batch_size=8", "data.reward_batch_size=8",
        "data.eval_batch_size=24", "data.calibration_images=16", "probes.probe_batch=8", "probes.align_archs=2"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharing_lab.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_plugin_model_dataset_and_scheme_run_a_search_through_the_cli(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    listed = _cli("--plugin", str(plugin), "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = json.loads(listed.stdout)
    assert "toynet" in names["models"] and "toydata" in names["datasets"] and "randorth" in names["schemes"]
    chosen = ["model.name=toynet", "model.widths=[2, 4]", "data.name=toydata", "sharing.scheme=randorth", *TINY]
    overrides = [arg for item in chosen
                 for arg in ("--set", item)]
    done = _cli("--plugin", str(plugin), "run-search", *overrides, "--out", str(tmp_path / "runs"), "--name", "toy")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "runs" / "toy" / "summary.json").read_text())
    assert summary["exported"]["widths"] in ("2", "4")  # one stage: one decision
    arch = json.loads((tmp_path / "runs" / "toy" / "arch.json").read_text())
    assert arch["model"] == "toynet"


def test_without_the_plugin_its_names_are_unknown_in_one_line():
    done = _cli("run-search", "--set", "model.name=toynet", "--out", "/nonexistent-never-made")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown model 'toynet'" in done.stderr


def test_a_bad_plugin_is_one_line_and_exit_2(tmp_path):
    missing = _cli("--plugin", "no_such_module_xyz", "list")
    assert missing.returncode == 2 and "no_such_module_xyz" in missing.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("from sharing_lab import register_scheme\n@register_scheme('bad')\ndef bad():\n    pass\n")
    with pytest.raises(InputError, match="argument"):
        load_plugin(str(broken))


def test_registry_checks_the_declared_interface_and_names():
    registry = Registry("thing", ("config", "seed"))
    with pytest.raises(TypeError, match="missing: seed"):
        registry.register("x")(lambda config: None)
    with pytest.raises(TypeError, match="name"):
        registry.register("a:b")
    registry.register("ok")(lambda config, seed: (config, seed))
    assert registry.names() == ["ok"] and "ok" in registry
    with pytest.raises(InputError, match="unknown thing 'nope'; known: ok"):
        registry.get("nope")
