"""Shared fixtures: the real sample data, and helpers that build bad rasters from real ones."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
TERRAMIND = DATA / "terramind"
PLACE = "38D_378R_2_3"
MAJORTOM_0U = (
    DATA / "majortom/Core-S2L2A/0U/0U_199R/"
    "S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419"
)
MAJORTOM_199U = (
    DATA / "majortom/Core-S2L2A/199U/199U_1099R/"
    "S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543"
)
VIRGINIA = DATA / "s2" / "virginia_L1C"
LANDSAT = DATA / "other" / "landsat7_rgb_byte.tif"
EXPLORADORES = DATA / "dem" / "exploradores_aster_30m.tif"
LOS_ANGELES = DATA / "dem" / "los_angeles_glo30_geoid.tif"


def terramind(modality: str, place: str = PLACE) -> Path:
    """Path of a TerraMind tile, e.g. ``terramind("S2L2A")``."""
    return TERRAMIND / modality / f"{place}.tif"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"the shared sample data must be at {DATA}"
    return DATA


def write_variant(
    src_path: Path,
    dst_path: Path,
    *,
    data: Callable[[np.ndarray], np.ndarray] | None = None,
    **profile_changes: Any,
) -> Path:
    """Copy a real raster with some profile fields (crs, transform, nodata, ...) or data changed.

    ``crs=None`` writes a file without a CRS.
    """
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        values = src.read()
        descriptions = src.descriptions
    if data is not None:
        values = data(values)
        profile["dtype"] = values.dtype.name
        profile["count"] = values.shape[0]
    profile.update(profile_changes)
    with rasterio.Env(GTIFF_FORCE_RGBA="NO"), rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(values)
        if values.shape[0] == len(descriptions):
            for i, d in enumerate(descriptions, start=1):
                if d:
                    dst.set_band_description(i, d)
    return dst_path


def truncated_copy(src_path: Path, dst_path: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of a file's bytes (header intact, pixel data cut)."""
    raw = Path(src_path).read_bytes()
    Path(dst_path).write_bytes(raw[: int(len(raw) * keep)])
    return dst_path


def leftovers(folder: Path) -> list[Path]:
    """Files left in ``folder`` (a failed write must leave none, temporary ones included)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture
def copy_tree() -> Callable[[Path, Path], Path]:
    def _copy(src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst)
        return dst

    return _copy
