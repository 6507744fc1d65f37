"""Training: strict configs, atomic exact-resume checkpoints, the DDP-ready loop."""

from geocopgen.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from geocopgen.training.config import (
    EMAConfig,
    LoopConfig,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from geocopgen.training.loop import EMA, Trainer, TrainResult

__all__ = [
    "EMA",
    "EMAConfig",
    "LoopConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "config_from_dict",
    "config_to_dict",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
]
