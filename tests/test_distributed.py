"""Several processes, one search (issue 6): batch sharding, DDP's gradient, and torchrun on CPU with gloo.

The torchrun tests launch ``python -m torch.distributed.run --standalone --nproc_per_node=2`` exactly as a user
would, on loopback only, and compare the 2-process search with the 1-process search at the same global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from sharing_lab.aps.schemes import get_scheme
from sharing_lab.compute.distributed import SINGLE, Group
from sharing_lab.data import load_data
from sharing_lab.data.bundle import shard_slice
from sharing_lab.data.imagenet import batch_indices
from sharing_lab.errors import InputError
from sharing_lab.runs.sweeps import read_table
from sharing_lab.search.supernet import Supernet
from sharing_lab.space.layout import build_layout
from sharing_lab.space.search_space import SearchSpace

SEARCH = ["data.name=synthetic", "model.widths=[2,4]", "data.batch_size=32", "data.reward_batch_size=32",
          "data.calibration_images=64", "data.eval_batch_size=128", "probes.align_archs=2", "probes.probe_batch=32",
          "search.prob_samples=4", "search.eval_archs=4", "search.beam_top=2", "search.epochs=4",
          "search.warmup_epochs=2", "search.eval_every=2", "device=cpu"]


# ---------------------------------------------------------------- sharding


@pytest.mark.parametrize("world_size", [2, 4])
def test_shards_of_each_batch_partition_the_single_process_batch(world_size):
    data = load_data("synthetic", seed=3)
    single = list(data.batches("train", 32, generator=torch.Generator().manual_seed(5)))
    shards = [list(data.batches("train", 32, generator=torch.Generator().manual_seed(5), shard=(rank, world_size)))
              for rank in range(world_size)]
    assert all(len(s) == len(single) for s in shards)
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([s[step][0] for s in shards]), x)
        assert torch.equal(torch.cat([s[step][1] for s in shards]), y)
        assert all(len(s[step][1]) == 32 // world_size for s in shards)


def test_augmented_shards_see_the_same_crops_as_one_process():
    data = load_data("synthetic", seed=0)
    data.augment = True
    single = next(iter(data.batches("train", 16, generator=torch.Generator().manual_seed(1))))
    halves = [next(iter(data.batches("train", 16, generator=torch.Generator().manual_seed(1), shard=(r, 2))))
              for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), single[0])


def test_image_folder_order_shards_match_in_memory_shards():
    order = list(range(100, 137))
    mine = [batch_indices(order, 8, True, (rank, 2)) for rank in range(2)]
    assert all(len(batch) == 4 for batches in mine for batch in batches)
    for start in range(0, 32, 8):  # 4 whole batches of 8; the 5 left over are dropped
        b = start // 8
        assert mine[0][b] + mine[1][b] == order[start: start + 8]
        assert all(mine[rank][b] == order[shard_slice(start, start + 8, rank, 2)] for rank in range(2))
    assert sum(len(batch) for batches in mine for batch in batches) == 32


def test_group_of_one_is_a_no_op_and_refuses_uneven_batches():
    tensor = torch.arange(6)
    assert SINGLE.shard(tensor) is tensor and SINGLE.sum(tensor) is tensor
    assert SINGLE.broadcast_ints([1, 2], 2) == (1, 2) and SINGLE.any(True) and not SINGLE.any(False)
    group = Group(1, 4)
    assert torch.equal(group.shard(torch.arange(8)), torch.tensor([2, 3]))
    with pytest.raises(InputError, match="divisible by the number of processes"):
        group.local_size(30, "data.batch_size")


# ---------------------------------------------------------------- DDP gradient (2 gloo processes, spawned)


def _network_and_batch():
    layout = build_layout("resnet20", "block", [2, 4], num_classes=10, in_channels=3, image_size=8)
    # BN on running statistics: per-sample
    supernet = Supernet(SearchSpace(layout, get_scheme("ordinal")), seed=0).eval()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 10, (8,), generator=generator)
    arch = (0,) * layout.num_decisions  # all widths equal: the stride-1 projection shortcuts go unused
    return supernet, x, y, arch


def _ddp_worker(rank: int, world_size: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    group = Group(rank, world_size)
    supernet, x, y, arch = _network_and_batch()
    model = group.wrap(supernet)
    F.cross_entropy(model(group.shard(x), arch), group.shard(y)).backward()
    if rank == 0:
        torch.save({name: p.grad for name, p in supernet.named_parameters()}, out)
    dist.barrier()
    dist.destroy_process_group()
    # gloo's threads can abort the interpreter's teardown ("terminate called without an active
    # exception"), which mp.spawn reports as a failed worker; the work is done and saved by now.
    os._exit(0)


def test_ddp_over_shards_gives_the_single_process_gradient(tmp_path):
    out = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    distributed = torch.load(out)
    supernet, x, y, arch = _network_and_batch()
    F.cross_entropy(supernet(x, arch), y).backward()
    unused = [name for name, p in supernet.named_parameters() if p.grad is None]
    assert unused, "the test architecture should leave some parameters unused"
    for name, p in supernet.named_parameters():
        if p.grad is None:
            assert distributed[name] is None, f"{name}: unused in one process, but DDP gave it a gradient"
        else:
            torch.testing.assert_close(distributed[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)


# ---------------------------------------------------------------- torchrun end to end


def _torchrun(args: list[str], processes: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "sharing_lab.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _search(out: Path, name: str, processes: int, *extra: str) -> subprocess.CompletedProcess:
    sets = [part for override in (*SEARCH, *extra) for part in ("--set", override)]
    if processes == 1:
        env = dict(os.environ, OMP_NUM_THREADS="2")
        command = [sys.executable, "-m", "sharing_lab.cli", "run-search", "--out", str(out), "--name", name, *sets]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    return _torchrun(["run-search", "--out", str(out), "--name", name, *sets], processes)


def _frames(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip().startswith("File \"")]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    results = {n: _search(out, f"p{n}", n) for n in (1, 2)}
    for n, result in results.items():
        assert result.returncode == 0, f"{n} process(es): {result.stderr[-3000:]}"
    return out, results


def test_two_processes_agree_with_one_at_the_same_global_batch(one_and_two):
    out, results = one_and_two
    one, two = (read_table(out / f"p{n}", "scalars") for n in (1, 2))
    merged = one.merge(two, on=["step", "epoch", "name"], suffixes=("_one", "_two"))
    assert len(merged) == len(one) == len(two)  # the same records, written once

    def values(name):
        rows = merged[merged.name == name]
        return rows.value_one.to_numpy(), rows.value_two.to_numpy()

    a, b = values("macs_sampled")  # rank 0 decides every architecture from the same generator
    assert (a[:2] == b[:2]).all()  # warm-up epochs: uniform draws, identical
    a, b = values("phi")  # Eq. 5 moves P/Q from their own values: identical on every rank
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-6, atol=0)
    a, b = values("train_loss")  # same images, same augmentations, BN statistics per half batch
    assert (abs(a - b) / a < 0.1).all(), (a, b)
    archs = [read_table(out / f"p{n}", "archs") for n in (1, 2)]
    first = [a[(a.epoch == 1) & (a.source == "sample")].widths.tolist() for a in archs]
    assert first[0] == first[1]  # the warm-up evaluation scores the same sampled architectures
    summary = json.loads((out / "p2" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["device"] == "cpu"
    assert json.loads((out / "p2" / "config.json").read_text())["processes"] == 2


def test_two_processes_print_the_outcome_once(one_and_two):
    _, results = one_and_two
    assert results[2].stdout.count("run directory:") == 1
    assert results[2].stderr.count("epoch 4/4") == 1


def test_torchrun_refuses_an_existing_run_once_and_keeps_it(one_and_two):
    out, _ = one_and_two
    before = sorted(p.name for p in (out / "p2").rglob("*"))
    result = _search(out, "p2", 2)
    assert result.returncode != 0
    assert result.stderr.count("error: run directory") == 1
    assert "sharing_lab" not in "".join(_frames(result.stderr))  # torchrun reports the failed worker itself
    assert sorted(p.name for p in (out / "p2").rglob("*")) == before


def test_torchrun_refuses_a_batch_the_processes_cannot_split(tmp_path):
    result = _search(tmp_path, "odd", 2, "data.batch_size=33")
    assert result.returncode != 0
    assert result.stderr.count("must be divisible by the number of processes") == 1
    assert "sharing_lab" not in "".join(_frames(result.stderr))
    assert not (tmp_path / "odd").exists()
