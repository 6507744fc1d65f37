"""Keep decoded outputs physically possible: clip them to their modality's domain, and count.

A generative model can decode values no sensor can produce (a DEM kilometres below sea level,
negative reflectance). Each modality in the registry states its physical ``domain``; decoded
values outside it are clipped to it, and the number of output values clipped is written to the
output's ``CLIPPED_TO_DOMAIN`` tag (0 when none) and reported with a :class:`DomainWarning`. This
is a guard that makes the damage visible, not a fix for the model's artefacts.

Each decoded sample is clipped before samples are reduced, so the mean and standard deviation
bands of ``samples > 1`` describe physically possible samples. What is counted: decoded values
(sample x band x pixel) on the working grid, each pixel once, although overlapping chips decode
it several times (a pixel counts in the chip whose share of the overlap holds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from geocopgen.errors import GeoCopGenWarning, warn
from geocopgen.modalities import Modality, get_modality
from geocopgen.raster.chips import Chip, ChipGrid

TAG = "CLIPPED_TO_DOMAIN"


class DomainWarning(GeoCopGenWarning):
    """Decoded values fell outside their modality's physical domain and were clipped."""


def clip_to_domain(values: np.ndarray, modality: str | Modality) -> int:
    """Clip ``values`` (physical units, NaN kept) to the modality's domain in place; return how
    many finite values were outside it."""
    low, high = get_modality(modality).domain
    outside = (values < low) | (values > high)
    np.clip(values, low, high, out=values, where=np.isfinite(values))
    return int(np.count_nonzero(outside))


def _owned_starts(offsets: Sequence[int], chip: int, length: int) -> list[int]:
    """Where each chip's own share of an axis starts: mid-way through its overlap with the
    previous chip, so the shares tile the axis exactly once."""
    size = min(chip, length)
    starts = [0] + [(a + size + b) // 2 for a, b in pairwise(offsets)]
    return [*starts, length]


class DomainGuard:
    """Clips each decoded chip (every sample, every band) to the target's physical domain and
    counts the values it clipped, each output pixel once; :meth:`report` tags and warns."""

    def __init__(self, target: str | Modality, chips: ChipGrid) -> None:
        self.modality = get_modality(target)
        self.rows = _owned_starts(chips.row_offsets, chips.chip_size, chips.height)
        self.cols = _owned_starts(chips.col_offsets, chips.chip_size, chips.width)
        self.clipped = 0
        self.values = 0

    def clip(self, chip: Chip, physical: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Clip ``(..., band, h, w)`` window-shaped physical values in place, counting those in
        the chip's own share of the raster (and where ``valid``, the output is not nodata)."""
        r0, c0 = int(chip.window.row_off), int(chip.window.col_off)
        rows = slice(self.rows[chip.row] - r0, self.rows[chip.row + 1] - r0)
        cols = slice(self.cols[chip.col] - c0, self.cols[chip.col + 1] - c0)
        owned = physical[..., rows, cols]
        keep = np.isfinite(owned)
        if valid is not None:
            keep &= valid[rows, cols]
        low, high = self.modality.domain
        self.clipped += int(np.count_nonzero(((owned < low) | (owned > high)) & keep))
        self.values += int(np.count_nonzero(keep))
        clip_to_domain(physical, self.modality)

    def report(self, writer: Any) -> None:
        """Write the count into ``writer``'s tags, and warn when it is not zero."""
        writer.update_tags(**{TAG: self.clipped})
        if self.clipped:
            low, high = self.modality.domain
            share = self.clipped / max(self.values, 1)
            warn(
                f"{self.clipped} decoded {self.modality.long_name} values ({share:.2%}) fell "
                f"outside its physical range ({low:g} to {high:g} {self.modality.units}) and "
                f"were clipped to it (tag {TAG}); the model is unsure there.",
                DomainWarning,
            )
