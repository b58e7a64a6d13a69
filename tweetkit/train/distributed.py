"""Distributed setup read from the environment torchrun sets; a single process without it.

The process group is created once per command (`setup` is idempotent) and destroyed when
the command ends (`teardown`): creating it again for every seed of a run races with the
previous group's shutdown and can hang."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Long enough for rank 0 to tokenize a large corpus or write a checkpoint to slow storage
# while the other ranks wait in a barrier (NCCL's own default aborts them after 10 minutes).
DEFAULT_TIMEOUT_S = 7200


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """The first process of this machine: it builds what the machine's processes share (token caches)."""
        return self.local_rank == 0

    def all_reduce_sums(self, values: list[float]) -> list[float]:
        """Each value summed over the processes, in one collective."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_reduce_sum(self, value: float) -> float:
        return self.all_reduce_sums([value])[0]

    def from_main(self, value):
        """Rank 0's `value` on every process: decisions taken from a figure (early stopping,
        the best epoch) must agree, or one process leaves the loop and the rest hang."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def world_size() -> int:
    """The process count torchrun announces (1 without torchrun), before any group exists."""
    return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1


def setup(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Init the process group when torchrun started us: nccl on GPUs, gloo on CPUs."""
    from tweetkit.modeling import resolve_device
    from tweetkit.threads import configure_torch

    configure_torch()
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        # TF32 tensor cores for fp32 matmuls (about 10 mantissa bits, as PyTorch's own mixed-precision advice allows)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size() == 1:
        return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(rank, world, local, torch.device(f"cuda:{local}" if use_cuda else "cpu"))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
