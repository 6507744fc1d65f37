"""COP-GEN model units: the one mapping between geocopgen's physical values and what a
COP-GEN-layout model reads and writes, for training places, latent stores and translation alike.

Physical units are reflectance (Sentinel-2), dB (Sentinel-1), metres (DEM) and class codes (land
cover, cloud mask). Model units are COP-GEN's official normalisations
(:mod:`geocopgen.copgen.normalisation`), with Sentinel-2 as the digital numbers a model was
trained on (``dn_offset``) and every invalid input value at :data:`INVALID_MODEL_VALUE`. Keeping
this in one module is what makes training and inference see the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from geocopgen.copgen import normalisation as norm
from geocopgen.raster.categories import Categories

#: ESRI 10 m land cover: code, name, colour (the classes COP-GEN's LULC slot knows, in order).
LULC_CATEGORIES = Categories(
    codes=(0, 1, 2, 4, 5, 7, 8, 9, 10, 11),
    names=("no data", "water", "trees", "flooded vegetation", "crops", "built area",
           "bare ground", "snow/ice", "clouds", "rangeland"),
    colours=((0, 0, 0), (26, 91, 171), (53, 130, 33), (135, 209, 158), (255, 219, 92),
             (237, 2, 42), (237, 233, 228), (242, 250, 255), (200, 200, 200), (239, 207, 168)),
)  # fmt: skip
#: The S2 cloud mask COP-GEN models: clear, thick cloud, thin cloud, shadow.
CLOUD_CATEGORIES = Categories(
    codes=(0, 1, 2, 3),
    names=("clear", "thick cloud", "thin cloud", "cloud shadow"),
    colours=((0, 0, 0), (255, 255, 255), (170, 170, 170), (60, 60, 90)),
)
CATEGORIES = {"LULC_LULC": LULC_CATEGORIES, "S2L1C_cloud_mask": CLOUD_CATEGORIES}
#: What an invalid input value becomes in model units: -1, what COP-GEN's own pre-processing
#: makes of nodata (S2 DN 0) and of a DEM at or below 0 m.
INVALID_MODEL_VALUE = -1.0


def to_model_units(key: str, physical: np.ndarray, dn_offset: int) -> torch.Tensor:
    """geocopgen's physical values of one slot ``(n, C, h, w)`` → COP-GEN model units, invalid
    values at :data:`INVALID_MODEL_VALUE`."""
    finite = np.isfinite(physical)
    x = torch.from_numpy(np.nan_to_num(physical))
    if key.startswith("S2"):
        y = norm.to_model(norm.dn_from_reflectance(x, dn_offset), key)
    elif key.startswith("S1"):
        y = norm.to_model(x, key, in_db=True)
    else:
        y = norm.to_model(x, key)
    return torch.where(torch.from_numpy(finite), y, INVALID_MODEL_VALUE)


def physical_from_model(key: str, y: torch.Tensor, dn_offset: int) -> torch.Tensor:
    """COP-GEN model units of a generated slot → geocopgen's physical units (reflectance, dB,
    metres), or the blended class scores of a categorical slot (turned into codes later)."""
    if key in CATEGORIES:
        return y
    x = norm.from_model(y, key)
    if key.startswith("S2"):
        return norm.reflectance_from_dn(x, dn_offset)
    if key.startswith("S1"):
        return 10.0 * torch.log10(x)
    return x


def count_limits(key: str, values: torch.Tensor, limits: dict[str, int]) -> None:
    """Add to ``limits`` how many physical values of slot ``key`` sit at a limit of COP-GEN's
    codecs or outside the modality's range (reported in the output's tags, not silent)."""
    if key in CATEGORIES:  # class scores: no physical limit to hit
        return

    def add(name: str, n: int) -> None:
        limits[name] = limits.get(name, 0) + int(n)

    if key == "DEM_DEM":
        add("DEM_AT_CEILING_8847M", norm.dem_saturated_count(values))
        add("DEM_AT_FLOOR_0M", int((values <= norm.DEM_MIN_M).sum()))
    elif key.startswith("S1"):
        counts = norm.s1_saturated_counts(10.0 ** (values / 10.0))
        add("S1_AT_FLOOR", counts["low"])
        add("S1_AT_CEILING", counts["high"])
    elif key.startswith("S2"):
        counts = norm.s2_out_of_range_counts(values)
        add("S2_BELOW_0", counts["below_0"])
        add("S2_ABOVE_1", counts["above_1"])


__all__ = [
    "CATEGORIES",
    "CLOUD_CATEGORIES",
    "INVALID_MODEL_VALUE",
    "LULC_CATEGORIES",
    "count_limits",
    "physical_from_model",
    "to_model_units",
]
