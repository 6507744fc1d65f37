"""The published COP-GEN backbones (``COPGEN``, ``libs/copgen_multi_post_ln.py``) as
:class:`~geocopgen.models.uvit.MultimodalUViT` configs, and a strict import of their weights.

The network is geocopgen's U-ViT with COP-GEN's per-slot latent shapes and patch sizes (spec A1,
A2): twelve slots in :data:`~geocopgen.copgen.layout.SLOT_NAMES` order, ten image latents with
patch 2 and two ``(1, 1, 3)`` scalar vectors with patch 1, so ``pos_embed`` holds 12 time tokens
and 822 patch tokens (834). Parameter names are the official ones, so a published
``<step>_nnet_ema.pth`` (a flat state dict, spec A5) loads name for name; anything that does not
fit is refused with every missing, unexpected and mis-shaped key named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from geocopgen.copgen.layout import COPGEN_SLOTS, SLOT_NAMES, CopgenSlot
from geocopgen.errors import CheckpointError
from geocopgen.models.checkpoints import LoadReport, load_checked, read_flat_state_dict
from geocopgen.models.uvit import MultimodalUViT

#: Where the published base backbone lives (`geocopgen convert copgen --hub` fetches it when asked).
COPGEN_WEIGHTS_URL = "https://huggingface.co/mespinosami/copgen-base"


@dataclass(frozen=True)
class CopgenSize:
    """Width and depth of one published COP-GEN backbone (``depth`` = in- plus out-blocks)."""

    embed_dim: int
    depth: int
    num_heads: int


#: ``configs/copgen/discrete/cop_gen_{base,large,huge}.py`` (spec A2).
COPGEN_SIZES: dict[str, CopgenSize] = {
    "base": CopgenSize(embed_dim=1024, depth=20, num_heads=16),
    "large": CopgenSize(embed_dim=1152, depth=28, num_heads=16),
    "huge": CopgenSize(embed_dim=1536, depth=30, num_heads=24),
}


def copgen_config(size: str = "base", **overrides) -> dict:
    """``MultimodalUViT`` keyword arguments of the published ``size``; ``overrides`` (e.g. a
    reduced ``embed_dim``/``depth``/``num_heads`` for tests) replace entries."""
    if size not in COPGEN_SIZES:
        raise CheckpointError(
            f"no published COP-GEN size {size!r}; the sizes are {', '.join(COPGEN_SIZES)}"
        )
    dims = COPGEN_SIZES[size]
    config = layout_config(
        COPGEN_SLOTS, embed_dim=dims.embed_dim, depth=dims.depth, num_heads=dims.num_heads
    )
    return {**config, **overrides}


def layout_config(
    slots: Sequence[CopgenSlot], *, embed_dim: int, depth: int, num_heads: int
) -> dict:
    """``MultimodalUViT`` keyword arguments for a COP-GEN slot layout (the published one, or a
    model's own patch sizes) at the given width and depth."""
    return {
        "modalities": [s.key for s in slots],
        "latent_channels": {s.key: s.latent_shape[0] for s in slots},
        "latent_size": {s.key: list(s.latent_shape[1:]) for s in slots},
        "patch_size": {s.key: s.patch_size for s in slots},
        "scalar_modalities": [s.key for s in slots if s.kind == "scalar"],
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
        "mlp_ratio": 4.0,
        "qkv_bias": False,
    }


def copgen_backbone(size: str = "base", **overrides) -> MultimodalUViT:
    """An (untrained) backbone with the published COP-GEN architecture of ``size``."""
    return MultimodalUViT(**copgen_config(size, **overrides))


def read_copgen_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a COP-GEN ``*_nnet_ema.pth`` (a flat state dict) with ``weights_only=True``.

    Anything else (a pickle that needs code, a nested training checkpoint, junk) is a one-line
    :class:`CheckpointError` naming the file.
    """
    return read_flat_state_dict(
        path,
        expected="it must be a COP-GEN backbone state dict such as 500000_nnet_ema.pth "
        f"({COPGEN_WEIGHTS_URL})",
    )


def import_copgen_weights(
    backbone: MultimodalUViT,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "COP-GEN state dict",
) -> LoadReport:
    """Load an official ``COPGEN`` state dict into ``backbone``, strictly, name for name.

    Raises :class:`CheckpointError` naming every missing, unexpected and mis-shaped key, and,
    when the checkpoint is another published size, which one it looks like.
    """
    if tuple(backbone.modality_names) != SLOT_NAMES:
        raise CheckpointError(
            f"{source}: COP-GEN weights index the slots as {', '.join(SLOT_NAMES)}; the backbone "
            f"has {', '.join(backbone.modality_names)}. Build it with copgen_backbone()"
        )
    return load_checked(backbone, state_dict, source, advice=_size_advice(state_dict, backbone))


def load_copgen_backbone(
    path: str | os.PathLike, size: str = "base", **overrides
) -> MultimodalUViT:
    """Build the published ``size`` and load ``path`` into it, strictly; in eval mode."""
    backbone = copgen_backbone(size, **overrides)
    import_copgen_weights(backbone, read_copgen_state_dict(path), source=str(path))
    return backbone.eval()


def guess_copgen_size(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The published size whose width and depth the checkpoint has, if any."""
    dims = checkpoint_dims(state_dict)
    for name, size in COPGEN_SIZES.items():
        if dims == (size.embed_dim, size.depth):
            return name
    return None


def checkpoint_dims(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """``(embed_dim, depth)`` read off a state dict: ``norm.weight``'s width and the number of
    in- plus out-blocks."""
    norm = state_dict.get("norm.weight")
    if norm is None or norm.ndim != 1:
        return None
    blocks = {
        tuple(k.split(".")[:2]) for k in state_dict if k.startswith(("in_blocks.", "out_blocks."))
    }
    return int(norm.shape[0]), len(blocks)


def _size_advice(state_dict: Mapping[str, torch.Tensor], backbone: MultimodalUViT) -> str:
    """What to do about a misfit: name the published size the checkpoint looks like."""
    dims = checkpoint_dims(state_dict)
    model = (int(backbone.config.embed_dim), int(backbone.config.depth))
    if dims is None or dims == model:
        return (
            f"It must be a COP-GEN backbone state dict of embed_dim {model[0]}, depth {model[1]}."
        )
    size = guess_copgen_size(state_dict)
    found = f"embed_dim {dims[0]}, depth {dims[1]}"
    if size is None:
        return f"The checkpoint has {found}, which is no published COP-GEN size."
    return (
        f"The checkpoint looks like COP-GEN {size} ({found}), the model has embed_dim "
        f"{model[0]}, depth {model[1]}; build it with copgen_backbone({size!r})."
    )


__all__ = [
    "COPGEN_SIZES",
    "COPGEN_WEIGHTS_URL",
    "CopgenSize",
    "checkpoint_dims",
    "copgen_backbone",
    "copgen_config",
    "guess_copgen_size",
    "import_copgen_weights",
    "load_copgen_backbone",
    "read_copgen_state_dict",
]
