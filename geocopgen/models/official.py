"""Import of the official COP-GEN-Beta weights (``nnet_ema_114000.pth``) and its sampler preset.

The official ``Triffuser`` state dict is a plain ``OrderedDict[str, Tensor]``; geocopgen's
:class:`~geocopgen.models.uvit.MultimodalUViT` uses the same parameter names, so the import is
a checked one-to-one load (every missing, unexpected or mis-shaped key is named). The file is read
with ``torch.load(weights_only=True)``: tensors only, never unpickled code.

Deliberate deviation: the official sampler feeds every *ignored* modality fresh N(0, 1) noise at
timestep 0 on every call; geocopgen omits ignored modalities from the sequence. Pass
``ignored="noise"`` to the sampler or pipeline for the official behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from geocopgen.errors import CheckpointError
from geocopgen.modalities import OFFICIAL_ORDER
from geocopgen.models.autoencoder import ThumbnailAutoencoder
from geocopgen.models.checkpoints import LoadReport, load_checked, read_flat_state_dict
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.models.schedule import official_scheduler
from geocopgen.models.uvit import MultimodalUViT

#: The official model's constructor values (U-ViT-L/2 over four 4x32x32 latents).
OFFICIAL_CONFIG: dict = {
    "modalities": list(OFFICIAL_ORDER),
    "latent_channels": 4,
    "latent_size": 32,
    "patch_size": 2,
    "embed_dim": 1024,
    "depth": 20,
    "num_heads": 16,
    "mlp_ratio": 4.0,
    "qkv_bias": False,
}

#: The official sampler settings; ``official_scheduler()`` is their diffusers counterpart.
OFFICIAL_SAMPLER: dict = {
    "num_inference_steps": 50,
    "ignored": "noise",
    "sample_posterior": True,
}

#: Where the official weights are published (download them yourself; geocopgen never does).
OFFICIAL_WEIGHTS_URL = (
    "https://huggingface.co/mespinosami/COP-GEN-Beta/resolve/main/nnet_ema_114000.pth"
)


def official_backbone(**overrides) -> MultimodalUViT:
    """An (untrained) backbone with the official architecture; ``overrides`` shrink it for tests."""
    return MultimodalUViT(**{**OFFICIAL_CONFIG, **overrides})


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``nnet_ema_*.pth`` safely (``weights_only=True``) into a flat tensor dict.

    A ``module.`` prefix (from a DDP-wrapped save) is stripped; anything that is not a mapping of
    tensors is a :class:`CheckpointError`.
    """
    obj = read_flat_state_dict(
        path,
        expected="it must be the official COP-GEN-Beta nnet_ema_*.pth state dict; download "
        f"the official weights from {OFFICIAL_WEIGHTS_URL}",
    )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def import_official_weights(
    backbone: MultimodalUViT,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "official state dict",
    strict: bool = True,
) -> LoadReport:
    """Load an official ``Triffuser`` state dict into ``backbone`` (official modality order).

    Raises :class:`CheckpointError` listing missing, unexpected and mis-shaped keys by name;
    with ``strict=False`` loads what fits and returns the report instead.
    """
    if tuple(backbone.modality_names) != OFFICIAL_ORDER:
        raise CheckpointError(
            f"{source}: official weights index modalities as {', '.join(OFFICIAL_ORDER)}; the "
            f"backbone has {', '.join(backbone.modality_names)}. Build it with official_backbone()"
        )
    return load_checked(backbone, state_dict, source, strict=strict)


def load_official_backbone(path: str | os.PathLike, **overrides) -> MultimodalUViT:
    """Build the official architecture and load ``nnet_ema_*.pth`` into it, strictly."""
    backbone = official_backbone(**overrides)
    import_official_weights(backbone, read_official_state_dict(path), source=str(path))
    return backbone.eval()


def convert_official_checkpoint(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    vae_path: str | os.PathLike | None = None,
) -> Path:
    """Convert ``nnet_ema_*.pth`` once into a pipeline folder (safetensors + JSON).

    With ``vae_path`` (a local diffusers SD VAE folder) the folder is a complete thumbnail-mode
    pipeline; without it, it holds the backbone and the official scheduler only.
    """
    return official_pipeline(path, vae_path=vae_path).save_pretrained(out_dir)


def official_pipeline(
    path: str | os.PathLike, *, vae_path: str | os.PathLike | None = None, **overrides
) -> CopGenPipeline:
    """The official model in thumbnail mode: one SD VAE shared by the four modalities.

    ``overrides`` change the backbone config (only useful for reduced test checkpoints).
    """
    codecs = {}
    if vae_path is not None:
        vae = ThumbnailAutoencoder.from_pretrained(str(vae_path))
        codecs = dict.fromkeys(OFFICIAL_ORDER, vae)
    return CopGenPipeline(
        backbone=load_official_backbone(path, **overrides),
        scheduler=official_scheduler(),
        autoencoders=codecs,
        ignored=OFFICIAL_SAMPLER["ignored"],
        num_inference_steps=OFFICIAL_SAMPLER["num_inference_steps"],
        sample_posterior=OFFICIAL_SAMPLER["sample_posterior"],
    )


__all__ = [
    "OFFICIAL_CONFIG",
    "OFFICIAL_SAMPLER",
    "OFFICIAL_WEIGHTS_URL",
    "convert_official_checkpoint",
    "import_official_weights",
    "load_official_backbone",
    "official_backbone",
    "official_pipeline",
    "read_official_state_dict",
]
