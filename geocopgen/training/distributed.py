"""torchrun/DDP plumbing. No home-made scheduler: torchrun starts the processes, this module
only reads its environment, joins the process group and splits each global batch."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geocopgen.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def local_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's contiguous share of a global batch; the batch must split evenly."""
    if global_batch % info.world_size:
        raise ConfigError(
            f"loop.batch_size={global_batch} does not split evenly over {info.world_size} "
            "processes; choose a multiple of the process count"
        )
    per = global_batch // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value
