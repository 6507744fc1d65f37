"""Tiny codecs and real places shared by ``test_latents.py``, ``test_pipelines.py`` and the
kill-and-resume subprocess."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from geocopgen.latents.places import places_from_folder
from geocopgen.models.autoencoder import ModalityAutoencoder

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
TERRAMIND = DATA / "terramind"


def tiny_codec(modality: str, seed: int = 0) -> ModalityAutoencoder:
    """A randomly initialised 8x autoencoder, small enough for 2 CPU cores; same seed, same
    weights (and so the same codec hash) in every process."""
    torch.manual_seed(seed)
    return ModalityAutoencoder(
        modality,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        norm_num_groups=8,
        mid_block_add_attention=False,
    ).eval()


def terramind_places(modalities=("s2l2a", "dem"), names=None):
    """The TerraMind tiles as places (offset warnings silenced: no metadata in those files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        places = places_from_folder(TERRAMIND, list(modalities))
    return [p for p in places if names is None or p.name in names]
