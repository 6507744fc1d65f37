"""Categorical rasters (land cover, cloud masks): what a class code means and how a mosaic of
per-class scores becomes codes.

Overlapping chips of a categorical output are combined the way continuous ones are, by blending,
but the blend runs over the per-class scores a decoder gives (one channel per class), and the
code is taken (argmax) only once the blend is complete: blending codes would average class
numbers, which means nothing, and taking the argmax per chip first would make chip borders
visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Categories:
    """Classes in score-channel order: the code written for each, its name and its colour."""

    codes: tuple[int, ...]
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    nodata: int = 255

    def finish(self, scores: np.ndarray) -> np.ndarray:
        """``(classes, h, w)`` blended scores → ``(1, h, w)`` uint8 codes; the first class wins
        ties (as ``argmax`` does); nodata where a score is NaN (no chip, or invalid input)."""
        invalid = np.isnan(scores).any(axis=0)
        best = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)
        out = np.asarray(self.codes, dtype=np.uint8)[best]
        out[invalid] = self.nodata
        return out[None]

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table entries (code → RGBA); nodata transparent."""
        table = {code: (*rgb, 255) for code, rgb in zip(self.codes, self.colours, strict=True)}
        table[self.nodata] = (0, 0, 0, 0)
        return table

    def tags(self) -> dict[str, str]:
        """``CLASS_<code>=<name>`` tags, so the class names travel with the file."""
        return {f"CLASS_{c}": n for c, n in zip(self.codes, self.names, strict=True)}
