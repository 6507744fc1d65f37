"""A latent store as a torch ``Dataset`` for training.

Each sample is one chip: ``{modality: latents (z, h, w)}``, with the same random flip/rotation
applied to every modality of the sample (they are co-registered; augmenting them differently
would teach the model wrong correspondences). Latents are the posterior mean or, with
``sample=True``, a fresh posterior sample from the stored moments at every access (as the
official training does), times the codec's scaling factor unless ``scaled=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geocopgen.errors import ConfigError
from geocopgen.latents.store import LatentStore
from geocopgen.models.autoencoder import sample_latents

#: The 8 symmetries of the square: (number of 90° rotations, horizontal flip).
DIHEDRAL = tuple((k, f) for f in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate the last two axes by ``k`` quarter turns, then flip horizontally if asked."""
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


class LatentDataset(Dataset):
    """Complete chips of a latent store, optionally filtered by valid-pixel fraction."""

    def __init__(
        self,
        store: str | Path | LatentStore,
        modalities: Sequence[str] | None = None,
        *,
        augment: bool = True,
        sample: bool = False,
        scaled: bool = True,
        min_valid: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.store = store if isinstance(store, LatentStore) else LatentStore.open(store)
        have = self.store.modalities
        self.modalities = list(modalities or have)
        unknown = [m for m in self.modalities if m not in have]
        if unknown:
            raise ConfigError(
                f"{self.store.path}: no {', '.join(unknown)} latents; the store holds "
                f"{', '.join(have)}"
            )
        table = self.store.table()
        ok = table.complete.to_numpy().copy()
        for m in self.modalities:
            ok &= table[f"valid_{m}"].to_numpy() >= min_valid
        self.indices = np.flatnonzero(ok)
        self.keys = table.key.to_numpy()[self.indices]
        codecs = self.store.codecs
        self.scaling = {
            m: float(codecs[m]["codec"].get("scaling_factor", 1.0)) if scaled else 1.0
            for m in self.modalities
        }
        self.augment, self.sample = augment, sample
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._arrays = {m: self.store.group[f"moments/{m}"] for m in self.modalities}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[i])
        if self.augment:
            k, flip = DIHEDRAL[int(torch.randint(8, (1,), generator=self.generator))]
        else:
            k, flip = 0, False
        out = {}
        for m in self.modalities:
            moments = torch.from_numpy(np.asarray(self._arrays[m][index]))[None]
            z = sample_latents(
                moments, self.scaling[m], sample=self.sample, generator=self.generator
            )[0]
            out[m] = dihedral(z, k, flip)
        return out
