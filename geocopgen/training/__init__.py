"""Training: strict configs, atomic exact-resume checkpoints, the DDP-ready loop, and the two
stages that use it (per-modality autoencoders, then the backbone on a latent store)."""

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


def __getattr__(name: str):  # the stages pull in diffusers and the raster stack: load on use
    if name == "train_autoencoder":
        from geocopgen.training.autoencoder import train_autoencoder

        return train_autoencoder
    if name == "StageResult":
        from geocopgen.training.stage import StageResult

        return StageResult
    if name == "train_backbone":
        from geocopgen.training.backbone_stage import train_backbone

        return train_backbone
    raise AttributeError(name)


__all__ = [
    "EMA",
    "EMAConfig",
    "LoopConfig",
    "OptimConfig",
    "StageResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "config_from_dict",
    "config_to_dict",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "train_autoencoder",
    "train_backbone",
]
