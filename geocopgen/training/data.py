"""What a backbone trains on: the ``data`` section of a backbone config (the latent store, which
chips, the codecs to ship with) and the chips it selects, shared by the 4-modality stage and
the COP-GEN one (:mod:`geocopgen.training.backbone_stage`, :mod:`geocopgen.training.copgen`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch.utils.data import Subset

from geocopgen.latents.dataset import LatentDataset


@dataclass(frozen=True)
class BackboneDataConfig:
    """The ``data`` section: the latent store, which chips, and the codecs to ship with."""

    store: str = ""
    modalities: tuple[str, ...] = ()  # default: every modality of the store
    autoencoders: dict[str, str] = field(default_factory=dict)  # modality → exported folder
    include_places: tuple[str, ...] = ()  # fnmatch patterns on the chip's place; empty: all
    exclude_places: tuple[str, ...] = ()  # e.g. the held-out place of a leave-one-out run
    val_places: tuple[str, ...] = ()  # patterns: chips kept out of training, for validation
    min_valid: float = 0.5
    augment: bool = True
    sample_posterior: bool = True  # a fresh posterior sample per access, as the official code



def chip_subset(dataset: LatentDataset, include: Sequence[str], exclude: Sequence[str]) -> Subset:
    """The dataset items whose place matches ``include`` (any; all if empty) and no ``exclude``."""
    keep = []
    for i, key in enumerate(dataset.keys):
        place = str(key).split("|", 1)[0]
        if include and not any(fnmatch.fnmatchcase(place, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(place, p) for p in exclude):
            continue
        keep.append(i)
    return Subset(dataset, keep)


__all__ = ["BackboneDataConfig", "chip_subset"]
