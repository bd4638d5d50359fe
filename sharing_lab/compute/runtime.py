"""How the search's tensors run on a device (DESIGN §7): the device, mixed precision and memory format.

``auto`` picks bf16 autocast for the forward passes (training, rewards, evaluation) and channels-last
activations on CUDA for inputs of at least 64×64 (ImageNet-scale, where the convolutions dominate a step), and
float32/contiguous for CIFAR-size inputs and on CPUs: on an H200 the CIFAR ResNet-20 supernet step is bound by
kernel launches, and autocast's extra casts made it 6–17% slower (docs/explanation/measurements.md). Whatever
the setting, the controller, the transforms P/Q and Φ (Eq. 4, 5), the optimiser state and the probes' gradients stay
float32; bf16 needs no loss scaling (float32's exponent range).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")
AUTO_MIXED_MIN_IMAGE = 64  # auto: bf16 + channels-last on CUDA from this input size up
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; refuses a device that is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    return device


# Below this many multiply-accumulates per training step (the widest architecture's MACs × the batch) a CPU
# search runs on one thread: at the embedded scale (2.4e6) a second thread gains nothing with OpenMP spinning and
# costs 2.6× with passive waiting; at 3.8e7 it gained 10%, at CIFAR scale (2e10) 1.4× (measured, 2 cores).
SMALL_STEP_MACS = 1e8


@dataclass(frozen=True)
class Runtime:
    """A resolved device with its precision and memory format, and torch's thread counts for a run's training
    loop (``threads``) and for its populations of architectures (``wide_threads``); None leaves torch's own."""

    device: torch.device
    bf16: bool = False
    channels_last: bool = False
    threads: int | None = None
    wide_threads: int | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for supernet/plain-network forward passes: bf16 autocast when enabled, else nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the runtime's memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def model(self, module: nn.Module) -> nn.Module:
        """``module`` moved to the device, its 4-d weights in the runtime's memory format."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def describe(self) -> dict:
        return {"device": str(self.device), "precision": "bf16" if self.bf16 else "fp32",
                "memory_format": "channels_last" if self.channels_last else "contiguous",
                "threads": self.threads if self.threads is not None else torch.get_num_threads()}

    def with_threads(self, setting: int | None, step_macs: float) -> Runtime:
        """This runtime with its thread counts for a training step of ``step_macs`` multiply-accumulates:
        ``setting`` when given, else one thread for a small step on a CPU (:data:`SMALL_STEP_MACS`) and torch's
        own count otherwise (every core, or what ``OMP_NUM_THREADS`` or a recipe's worker set); populations get
        at least torch's own count."""
        available = torch.get_num_threads()
        if setting is None:
            setting = 1 if self.device.type == "cpu" and step_macs < SMALL_STEP_MACS else available
        return dataclasses.replace(self, threads=setting, wide_threads=max(setting, available))


def resolve_runtime(device: str | torch.device, precision: str = "auto", memory_format: str = "auto",
                    image_size: int = AUTO_MIXED_MIN_IMAGE) -> Runtime:
    """The runtime for a device name and the ``runtime`` settings (``auto``: bf16 and channels-last on CUDA
    for ``image_size`` of at least :data:`AUTO_MIXED_MIN_IMAGE`, else float32 and contiguous)."""
    if precision not in PRECISIONS:
        raise InputError(f"runtime.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if memory_format not in MEMORY_FORMATS:
        raise InputError(f"runtime.memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    cuda = resolved.type == "cuda" and image_size >= AUTO_MIXED_MIN_IMAGE
    bf16 = precision == "bf16" or (precision == "auto" and cuda)
    channels_last = memory_format == "channels_last" or (memory_format == "auto" and cuda)
    return Runtime(resolved, bf16, channels_last)


@contextlib.contextmanager
def run_settings(runtime: Runtime) -> Iterator[None]:
    """The process-wide torch settings of a run on ``runtime`` for the ``with`` block, restored after it: the
    training loop's thread count, and on CUDA cuDNN's autotuner (a supernet has a few hundred (width, stride)
    shapes, each tuned once)."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or runtime.device.type == "cuda"
    try:
        with torch_threads(runtime.threads):
            yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the ``with`` block (None: left as it is), restored after."""
    saved = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
