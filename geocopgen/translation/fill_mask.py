"""What a gap fill fills: one boolean mask on the input's grid (``True`` = fill).

It comes from one of four places:

* **a mask raster** (any grid, any CRS): non-zero pixels are filled, reprojected onto the input
  by nearest neighbour; pixels outside the mask raster, and its own nodata, are not filled;
* **the scene classification layer** (``"scl"``) of a Sentinel-2 L2A product: classes
  :data:`SCL_FILLED` (cloud shadow, cloud of medium and high probability, thin cirrus), from the
  ``SCL`` raster beside the input (any resolution: reprojected by nearest neighbour);
* **the input's own nodata** (``"nodata"``, the default): every pixel where a band is invalid;
* **the model's cloud mask** (``"model"``): resolved by :mod:`geocopgen.translation.fill`, which
  needs the model.

Cloud edges are where haze is, so a mask can be dilated by a disk of ``dilate`` pixels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from geocopgen.errors import ConfigError, GeoCopGenWarning, InputError, warn
from geocopgen.raster.grid import GeoBox, grid_of, rasterio_crs

#: The Sentinel-2 L2A scene classes a ``"scl"`` mask fills, by code (ESA L2A product spec).
SCL_FILLED = {
    3: "cloud shadow",
    8: "cloud, medium probability",
    9: "cloud, high probability",
    10: "thin cirrus",
}
#: The named mask sources; anything else is a mask raster's path.
NAMED_SOURCES = ("nodata", "scl", "model")
_SCL_FILE = re.compile(r"(^|[_\-.])SCL([_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class FillMask:
    """Which pixels of the input grid to fill, where that came from (for the output's tags), and
    which pixels of the input are invalid (computed once: every step of a fill needs them)."""

    fill: np.ndarray
    source: str
    invalid: np.ndarray

    @property
    def not_kept(self) -> np.ndarray:
        """The pixels that hold nothing to keep: to fill, or invalid."""
        return self.fill | self.invalid

    @property
    def fraction(self) -> float:
        return float(self.fill.mean()) if self.fill.size else 0.0


def from_raster(path: str | os.PathLike, grid: GeoBox) -> np.ndarray:
    """A mask raster's non-zero pixels on ``grid`` (nearest neighbour); refused with one line when
    it has no CRS or does not overlap ``grid``."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        raise InputError(f"{path}: cannot open the mask raster; check the path") from None
    with src:
        if src.crs is None:
            raise InputError(
                f"{path}: the mask has no CRS, so it cannot be placed on the input; give it one "
                "(gdal_edit.py -a_srs EPSG:...)"
            )
        crs = rasterio_crs(grid)
        left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds)
        g_left, g_bottom, g_right, g_top = grid.boundingbox.bbox
        if left >= g_right or right <= g_left or bottom >= g_top or top <= g_bottom:
            raise InputError(
                f"{path}: the mask does not overlap the input; give a mask of the same place"
            )
        if src.crs != crs:
            warn(
                f"{path}: the mask is in {src.crs.to_string()}, the input in {crs.to_string()}; "
                "reprojected onto the input (nearest neighbour)",
                GeoCopGenWarning,
            )
        values = src.read(1)
        nodata = src.nodata
    fill = (values != 0) & np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        fill &= values != nodata
    return nearest(fill.astype(np.uint8), src.transform, src.crs, grid).astype(bool)


def nearest(values: np.ndarray, transform: Any, crs: Any, grid: GeoBox) -> np.ndarray:
    """One band moved onto ``grid`` by nearest neighbour (0 where it does not reach)."""
    out = np.zeros(grid.shape, dtype=values.dtype)
    reproject(values, out, src_transform=transform, src_crs=crs, dst_transform=grid.affine,
              dst_crs=rasterio_crs(grid), resampling=Resampling.nearest)  # fmt: skip
    return out


def from_scl(classes: np.ndarray) -> np.ndarray:
    """The pixels of a scene classification whose class :data:`SCL_FILLED` lists."""
    return np.isin(classes, list(SCL_FILLED))


def scl_layer(source: str | os.PathLike) -> Path:
    """The input's scene classification: an ``SCL`` raster in the input's folder (a product's
    ``*_SCL_20m`` file beside its bands); refused with one line when there is none."""
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    found = sorted(p for p in folder.glob("*") if _SCL_FILE.search(p.stem) and p.is_file())
    if found:
        return found[0]
    raise InputError(
        f"{source}: no scene classification layer (no SCL raster beside it); give a mask raster "
        "(--mask MASK.tif) or fill the nodata (--mask nodata)"
    )


def dilate(fill: np.ndarray, pixels: int) -> np.ndarray:
    """``fill`` grown by a disk of radius ``pixels``."""
    if pixels < 0:
        raise ConfigError(f"dilate must be 0 or more pixels, got {pixels}")
    if pixels == 0 or not fill.any():
        return fill
    r = np.arange(-pixels, pixels + 1)
    disk = torch.from_numpy(((r[:, None] ** 2 + r[None] ** 2) <= pixels**2).astype(np.float32))
    x = torch.from_numpy(fill.astype(np.float32))[None, None]
    grown = torch.nn.functional.conv2d(x, disk[None, None], padding=pixels)
    return (grown[0, 0] > 0.5).numpy()


def invalid_pixels(array: xr.DataArray) -> np.ndarray:
    """Pixels where any band of ``array`` is invalid (computed window by window by dask)."""
    return np.asarray(array.isnull().any("band").values)


def scl_on(path: Path, grid: GeoBox) -> np.ndarray:
    """A scene classification raster's filled classes on ``grid`` (nearest neighbour)."""
    with rasterio.open(path) as src:
        return from_scl(nearest(src.read(1), src.transform, src.crs, grid))


def resolve(
    array: xr.DataArray,
    mask: str | os.PathLike,
    dilation: int = 0,
    *,
    model_mask: Callable[[xr.DataArray], np.ndarray] | None = None,
) -> FillMask:
    """The pixels of ``array``'s grid to fill, from the source ``mask`` (see the module
    docstring), grown by ``dilation`` px. ``model_mask`` makes the model's cloud mask."""
    grid = grid_of(array)
    source = str(mask)
    invalid = invalid_pixels(array)
    if source == "nodata":
        fill = invalid
    elif source == "scl":
        fill = scl_on(scl_layer(array.attrs.get("source", "")), grid)
    elif source == "model":
        if model_mask is None:
            raise ConfigError("mask='model' needs a COP-GEN-layout model with a cloud-mask slot")
        fill = model_mask(array)
    else:
        fill = from_raster(source, grid)
    return FillMask(dilate(fill, dilation), describe_source(mask), invalid)


def describe_source(mask: str | os.PathLike) -> str:
    """How a mask source is named in tags and messages."""
    if str(mask) == "scl":
        return "scl (classes " + ", ".join(str(c) for c in SCL_FILLED) + ")"
    if str(mask) in NAMED_SOURCES:
        return str(mask)
    return f"file {mask}"


__all__ = [
    "NAMED_SOURCES",
    "SCL_FILLED",
    "FillMask",
    "describe_source",
    "dilate",
    "from_raster",
    "from_scl",
    "invalid_pixels",
    "nearest",
    "resolve",
    "scl_layer",
    "scl_on",
]
