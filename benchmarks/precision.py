"""Which precision and memory format pay off, per model and input size (the basis of ``runtime`` ``auto``).

Times a training step of the plain network at its base widths in float32/contiguous and in bf16 autocast with
channels-last, on CIFAR-size and ImageNet-size inputs. Usage: ``python benchmarks/precision.py --device cuda``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharing_lab.analysis.bench import elapsed_ms  # noqa: E402
from sharing_lab.compute.runtime import resolve_runtime  # noqa: E402
from sharing_lab.compute.training import train_step  # noqa: E402
from sharing_lab.space.layout import build_layout  # noqa: E402
from sharing_lab.space.plain import build_plain  # noqa: E402

CASES = (("resnet20", 32, 256), ("resnet56", 32, 256), ("resnet18", 224, 128), ("mobilenetv2", 224, 128))


def step_ms(model: str, image_size: int, batch: int, device: str, precision: str, memory_format: str,
            repeats: int) -> float:
    runtime = resolve_runtime(device, precision, memory_format, image_size)
    layout = build_layout(model, image_size=image_size)
    net = runtime.model(build_plain(layout, layout.base_widths()))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = runtime.input(torch.randn(batch, 3, image_size, image_size, device=runtime.device))
    y = torch.randint(0, layout.num_classes, (batch,), device=runtime.device)
    for _ in range(3):
        train_step(net, optimizer, x, y, runtime)
    return statistics.median(elapsed_ms(lambda: train_step(net, optimizer, x, y, runtime), runtime.device)
                             for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    rows = []
    for model, size, batch in CASES:
        fp32 = step_ms(model, size, batch, args.device, "fp32", "contiguous", args.repeats)
        mixed = step_ms(model, size, batch, args.device, "bf16", "channels_last", args.repeats)
        rows.append({"model": model, "image_size": size, "batch": batch, "fp32_ms": fp32, "bf16_cl_ms": mixed,
                     "speedup": fp32 / mixed})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
