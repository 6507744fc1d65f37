"""Latent stores: chips of co-registered modalities encoded into zarr, read back for training.

* :mod:`~geocopgen.latents.store`: the zarr v3 layout, chip table, codec identity, resume flags;
* :mod:`~geocopgen.latents.encode`: dask-parallel, resumable encoding of :class:`Place` objects;
* :mod:`~geocopgen.latents.dataset`: the torch ``Dataset`` with co-augmentation.
"""

from geocopgen.latents.encode import (
    EncodeReport,
    MomentEncoder,
    Place,
    chip_windows,
    codec_identity,
    encode_places,
)
from geocopgen.latents.store import ChipRecord, LatentStore

__all__ = [
    "ChipRecord",
    "EncodeReport",
    "LatentDataset",
    "LatentStore",
    "MomentEncoder",
    "Place",
    "chip_windows",
    "codec_identity",
    "encode_places",
]


def __getattr__(name: str):  # the Dataset pulls in torch.utils.data only when asked for
    if name == "LatentDataset":
        from geocopgen.latents.dataset import LatentDataset

        return LatentDataset
    raise AttributeError(name)
