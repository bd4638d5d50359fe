"""One search over several processes (DESIGN §3, §7): ``torchrun`` + DistributedDataParallel, NCCL or gloo.

The division of work, so that N processes at a global batch B compute what one process computes at batch B:

- every rank draws the same permutation and augmentation of the training split (same data seed) and takes its
  own contiguous B/N slice of each global batch, so the ranks' slices partition the single-process batch and
  DDP's gradient average equals the single-process mean gradient (BatchNorm statistics are per rank, as in
  DDP without SyncBatchNorm);
- rank 0 decides the architecture(s) of each step (uniform in warm-up, the controller in the search) and
  broadcasts them; the reward batch is split the same way and the correct counts are summed, so the controller,
  kept on rank 0, learns from the reward of the whole reward batch;
- the transforms P/Q move by Eq. 5 from their own values (no data), hence identically on every rank; they are
  re-broadcast from rank 0 before every evaluation anyway, and BatchNorm running statistics are averaged;
- evaluation, probes, records and checkpoints are rank 0's; the other ranks wait at a barrier.

The rendezvous (``MASTER_ADDR``/``MASTER_PORT``, set by torchrun) is read by torch's ``env://`` method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputError


@dataclass(frozen=True)
class Group:
    """This process's place among ``world_size`` processes; the default is a single process (no collectives)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives' tensors live

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_size(self, global_size: int, what: str) -> int:
        """The per-rank share of a global batch; refuses a batch that does not divide evenly."""
        if global_size % self.world_size:
            raise InputError(f"{what} ({global_size}) must be divisible by the number of processes "
                             f"({self.world_size})")
        return global_size // self.world_size

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (of indices or of per-image parameters)."""
        if not self.active:
            return items
        size = len(items) // self.world_size
        return items[self.rank * size: (self.rank + 1) * size]

    def broadcast_ints(self, values: list[int] | None, length: int) -> tuple[int, ...]:
        """Rank 0's ``values`` (``length`` ints) on every rank."""
        if not self.active:
            return tuple(values)
        tensor = torch.zeros(length, dtype=torch.int64, device=self.device)
        if self.is_main:
            tensor.copy_(torch.tensor(values, dtype=torch.int64))
        dist.broadcast(tensor, 0)
        return tuple(tensor.tolist())

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a new tensor; unchanged with one process)."""
        if not self.active:
            return tensor
        reduced = tensor.detach().clone().to(self.device)
        dist.all_reduce(reduced, dist.ReduceOp.SUM)
        return reduced.to(tensor.device)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on one (stop requests reach ranks at different moments)."""
        if not self.active:
            return flag
        return bool(self.sum(torch.tensor([int(flag)], device=self.device)).item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_object(self, value):
        if not self.active:
            return value
        holder = [value if self.is_main else None]
        dist.broadcast_object_list(holder, 0)
        return holder[0]

    @torch.no_grad()
    def sync_buffers(self, module: nn.Module, average: tuple[type, ...] = (nn.modules.batchnorm._BatchNorm,)) -> None:
        """Average the floating buffers of ``average`` modules over ranks; take every other buffer from rank 0."""
        if not self.active:
            return
        averaged = {id(b) for m in module.modules() if isinstance(m, average) for b in m.buffers(recurse=False)
                    if b.is_floating_point()}
        for buffer in module.buffers():
            if id(buffer) in averaged:
                buffer.div_(self.world_size)
                dist.all_reduce(buffer, dist.ReduceOp.SUM)
            else:
                dist.broadcast(buffer, 0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` for the weight step: DistributedDataParallel over the ranks, or itself with one process.

        ``find_unused_parameters``: a step's architecture leaves some parameters out (unneeded projection
        shortcuts, unused BN candidates); DDP leaves their gradients untouched (None), as one process would.
        Buffers are not broadcast at every forward: BN statistics are averaged before evaluation instead.
        """
        if not self.active:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        with warnings.catch_warnings():  # newer torch renames the flag; the old name works from 2.2 on
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
            return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True,
                                                       broadcast_buffers=False)


SINGLE = Group()


def init_group(rank: int, world_size: int, local_rank: int, device: str) -> tuple[Group, str]:
    """Join the process group that torchrun set up; returns the group and this rank's device name.

    NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.
    """
    if world_size < 2:
        return SINGLE, device
    if device.startswith("cuda:"):
        raise InputError(f"device {device!r} names one GPU; under torchrun use --device cuda (each process "
                         "takes the GPU of its LOCAL_RANK)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices exist")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return Group(rank, world_size, local_rank, torch.device(device)), device


def close_group(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()
