"""The candidates for N small networks as one computation (issue 22), timed on one training step of the digits
space's 64 architectures (batch 32, 8×8 images, one thread):

- grouped convolutions over zero-padded channel blocks (:class:`sharing_lab.space.population.Population`, what
  the toolkit uses);
- ``torch.func``: ``stack_module_state`` + ``vmap`` of ``functional_call`` over the members' parameters padded to
  the widest network (without the masks that would keep padding at zero, so its figure is a lower bound);
- the networks one at a time (8 of them, the time scaled to 64).

Usage: ``python benchmarks/population_candidates.py [--device cpu|cuda] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharing_lab.space.layout import build_layout  # noqa: E402
from sharing_lab.space.plain import PlainNet  # noqa: E402
from sharing_lab.space.population import build_population  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    layout = build_layout("resnet20", "stage", [1, 2, 3, 4], num_classes=10, in_channels=1, image_size=8)
    archs = list(itertools.product(*(range(len(d.candidates)) for d in layout.decisions)))
    members = [layout.widths_of(arch) for arch in archs]
    x, y = torch.randn(32, 1, 8, 8, device=device), torch.randint(0, 10, (32,), device=device)

    population = build_population(layout, members).to(device)
    nets = [PlainNet(layout, layout.widths_of(archs[-1])).to(device) for _ in members]
    for net in nets:
        replace_all_batch_norm_modules_(net)  # vmap cannot update per-member running statistics in place
    params, buffers = stack_module_state(nets)
    template = copy.deepcopy(nets[0]).to("meta")

    def grouped() -> None:
        out = population(x)  # (B, N, classes)
        F.cross_entropy(out.permute(0, 2, 1), y[:, None].expand(-1, len(members)), reduction="sum").backward()

    def vmapped() -> None:
        out = vmap(lambda p, b, inputs: functional_call(template, (p, b), (inputs,)), in_dims=(0, 0, None))(
            params, buffers, x)  # (N, B, classes)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.repeat(len(members)), reduction="sum")
        torch.autograd.grad(loss, list(params.values()))

    def alone() -> None:
        for net in nets[:8]:
            F.cross_entropy(net(x), y).backward()

    for name, step, scale in (("population (grouped convolutions)", grouped, 1),
                              ("torch.func vmap over padded parameters", vmapped, 1),
                              ("one at a time (8 timed, scaled to 64)", alone, len(members) / 8)):
        step()
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * scale)
        print(f"{name:<42}{statistics.median(times) * 1e3:8.1f} ms per step of {len(members)} networks")


if __name__ == "__main__":
    main()
