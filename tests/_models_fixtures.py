"""Tiny model components and real-tile loaders shared by the ``test_models_*`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch

from geocopgen.modalities import dn_to_reflectance, get_modality
from geocopgen.models import ModalityAutoencoder, MultimodalUViT

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
TERRAMIND = DATA / "terramind"
_FOLDERS = {"s2l2a": "S2L2A", "s2l1c": "S2L1C", "s1rtc": "S1RTC", "dem": "DEM"}


def read_tile(modality: str, place: str, size: int = 64) -> torch.Tensor:
    """A centre crop of a TerraMind tile in normalised model units, ``(1, C, size, size)``.

    The TerraMind tiles carry no offset metadata; offset 0 is used (it does not matter for the
    mechanics these tests check).
    """
    mod = get_modality(modality)
    with rasterio.open(TERRAMIND / _FOLDERS[mod.name] / f"{place}.tif") as src:
        off = (src.height - size) // 2
        data = src.read(window=((off, off + size), (off, off + size))).astype(np.float32)
    if mod.name.startswith("s2"):
        data = dn_to_reflectance(data, 0)
    return torch.from_numpy(mod.normalize(data, axis=0)).unsqueeze(0)


def tiny_backbone(
    modalities=("dem", "s1rtc", "s2l1c", "s2l2a"), latent_size: int = 8, seed: int = 0, **kw
) -> MultimodalUViT:
    torch.manual_seed(seed)
    args = dict(latent_channels=4, latent_size=latent_size, patch_size=2, embed_dim=32, depth=2)
    args.update(kw)
    return MultimodalUViT(modalities=modalities, num_heads=4, **args).eval()


def tiny_autoencoder(modality: str, seed: int = 0) -> ModalityAutoencoder:
    torch.manual_seed(seed)
    return ModalityAutoencoder(
        modality=modality,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        norm_num_groups=4,
        mid_block_add_attention=False,
    ).eval()
