"""The device runtime (issue 6): precision and memory format resolved from the config, the bf16/channels-last
search path exercised on the CPU, and, where CUDA exists, the GPU path (augmentation on the device, no host
waits in the warm-up loop, a short search end to end)."""

from __future__ import annotations

import math

import pytest
import torch

from sharing_lab.compute.runtime import resolve_device, resolve_runtime, run_settings
from sharing_lab.config import Config, apply_overrides
from sharing_lab.data import load_data
from sharing_lab.data.bundle import random_crop_flip
from sharing_lab.errors import InputError
from sharing_lab.runs.sweeps import read_table
from sharing_lab.search import loop, session

TINY = ["data.name=synthetic", "model.widths=[2,4]", "data.batch_size=64", "data.reward_batch_size=32",
        "data.calibration_images=64", "data.eval_batch_size=128", "probes.align_archs=2", "probes.probe_batch=32",
        "search.prob_samples=4", "search.eval_archs=2", "search.beam_top=2", "search.epochs=2",
        "search.warmup_epochs=1", "search.eval_every=1"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _open(config: Config, run_dir, **kwargs) -> session.Search:
    """open_search on a fresh run directory (open_search does not create it; launch.start does)."""
    run_dir.mkdir(parents=True)
    return session.open_search(config, run_dir, **kwargs)


def test_auto_runtime_is_fp32_contiguous_on_cpu_and_explicit_settings_win():
    if torch.cuda.is_available():  # auto: mixed precision only for ImageNet-size inputs
        assert resolve_runtime("cuda", image_size=224).bf16 and not resolve_runtime("cuda", image_size=32).bf16
    auto = resolve_runtime("cpu")
    assert (auto.bf16, auto.channels_last) == (False, False)
    assert auto.describe() == {"device": "cpu", "precision": "fp32", "memory_format": "contiguous",
                               "threads": torch.get_num_threads()}
    explicit = resolve_runtime("cpu", "bf16", "channels_last")
    assert (explicit.bf16, explicit.channels_last) == (True, True)
    x = explicit.input(torch.randn(2, 3, 4, 4))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with explicit.autocast():
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.bfloat16


def test_a_small_step_runs_on_one_thread_a_large_one_on_torchs_own_and_a_setting_wins():
    cpu = resolve_runtime("cpu")
    assert cpu.with_threads(None, 2.4e6).threads == 1  # the embedded default's step
    assert cpu.with_threads(None, 2e10).threads == torch.get_num_threads()  # CIFAR scale
    assert cpu.with_threads(3, 2.4e6).threads == 3
    assert cpu.with_threads(None, 2.4e6).wide_threads == max(1, torch.get_num_threads())
    saved = torch.get_num_threads()
    with run_settings(cpu.with_threads(1, 0)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == saved  # the entry point's setting is given back


@pytest.mark.parametrize("key, value", [("runtime.precision", "fp16"), ("runtime.memory_format", "nhwc")])
def test_unknown_runtime_settings_are_refused(key, value, tmp_path):
    config = apply_overrides(Config(), [*TINY, f"{key}={value}"])
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        _open(config, tmp_path / "run")


def test_absent_devices_are_refused():
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")


def test_bf16_channels_last_search_runs_on_cpu_and_keeps_float32_state(tmp_path):
    config = apply_overrides(Config(), [*TINY, "runtime.precision=bf16", "runtime.memory_format=channels_last"])
    search = _open(config, tmp_path / "run", log=lambda message: None)
    summary = loop.run(search)
    assert summary["precision"] == "bf16" and summary["memory_format"] == "channels_last"
    assert all(p.dtype == torch.float32 for p in search.supernet.parameters())
    assert all(p.dtype == torch.float32 for p in search.state.controller.parameters())
    assert all(t.dtype == torch.float32 for _, m in search.supernet.aps_layers() for t in m.sides()[0])
    scalars = read_table(tmp_path / "run", "scalars")
    assert math.isfinite(scalars[scalars.name == "train_loss"].value.iloc[-1])
    assert scalars[scalars.name == "val_acc_widest"].value.between(0, 1).all()


def test_bf16_forward_agrees_with_float32_on_cpu():
    from sharing_lab.aps.schemes import get_scheme
    from sharing_lab.search.supernet import Supernet
    from sharing_lab.space.layout import build_layout
    from sharing_lab.space.search_space import SearchSpace

    layout = build_layout("resnet20", "stage", [4, 8], num_classes=10, in_channels=3, image_size=8)
    supernet = Supernet(SearchSpace(layout, get_scheme("transitionary")), seed=0)
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = supernet(x, (1, 0, 1))
    with resolve_runtime("cpu", "bf16").autocast():
        approximate = supernet(x, (1, 0, 1))
    assert approximate.dtype == torch.bfloat16
    torch.testing.assert_close(approximate.float(), exact, rtol=0.1, atol=0.1)


# ---------------------------------------------------------------- CUDA only (run on the GPU machine)


@cuda
def test_gpu_augmentation_equals_cpu_augmentation():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    on_cpu = random_crop_flip(images, 4, torch.Generator().manual_seed(3))
    on_gpu = random_crop_flip(images.cuda(), 4, torch.Generator().manual_seed(3))
    assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8
    assert torch.equal(on_gpu.cpu(), on_cpu)


@cuda
def test_gpu_batches_are_the_cpu_batches():
    data = load_data("synthetic", seed=0)
    data.augment = True
    cpu = next(iter(data.batches("train", 32, generator=torch.Generator().manual_seed(1))))
    gpu = next(iter(data.batches("train", 32, generator=torch.Generator().manual_seed(1), device="cuda")))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    assert torch.equal(gpu[1].cpu(), cpu[1])


@cuda
def test_warmup_epoch_does_not_wait_for_the_gpu_per_step(tmp_path):
    config = apply_overrides(Config(), [*TINY, "device=cuda", "data.batch_size=16", "probes.enabled=false"])
    search = _open(config, tmp_path / "run", log=lambda message: None)
    loop.train_epoch(search)  # cuDNN tuning and first copies
    assert search.state.steps_per_epoch >= 8
    with pytest.warns(UserWarning) as caught:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop.train_epoch(search)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    waits = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(waits) <= 3, [str(w.message) for w in waits]  # the epoch's totals, not one per step


@cuda
def test_a_search_step_waits_for_the_gpu_once(tmp_path):
    """Issue 14: in the search phase the reward is the one device-to-host wait of a step (Eq. 5 and the next
    batch are issued before it is read)."""
    config = apply_overrides(Config(), [*TINY, "device=cuda", "data.batch_size=16", "probes.enabled=false",
                                        "search.warmup_epochs=0"])
    search = _open(config, tmp_path / "run", log=lambda message: None)
    loop.train_epoch(search)  # cuDNN tuning, first copies, the kernel groups' index caches
    steps = search.state.steps_per_epoch
    with pytest.warns(UserWarning) as caught:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop.train_epoch(search)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    waits = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(waits) <= steps + 3, [str(w.message) for w in waits]  # one per step, and the epoch's totals


@cuda
def test_short_search_on_gpu_end_to_end(tmp_path):
    config = apply_overrides(Config(), [*TINY, "device=cuda"])
    summary = loop.run(_open(config, tmp_path / "run", log=lambda message: None))
    assert summary["device"].startswith("cuda")  # auto on 8×8 inputs: float32, contiguous (launch-bound)
    assert (summary["precision"], summary["memory_format"]) == ("fp32", "contiguous")
    assert 0 <= summary["exported"]["acc"] <= 1
