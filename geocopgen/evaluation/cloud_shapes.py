"""Real cloud shapes for judging gap filling: cut from a cloudy scene, laid over a clear one.

A fill can only be scored where the truth is known, so the clouds must be laid over a clear
scene. Their shapes should still be real ones (ragged edges, holes, many sizes): here they come
from a real cloudy Sentinel-2 L1C tile by the classic brightness test (top-of-atmosphere blue
reflectance above :data:`BRIGHT_BLUE`, the first test of most cloud detectors). Neither Major TOM
cell in the shared data carries a cloud (both cloud masks are all zero), so they cannot serve.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio

from geocopgen.raster.grid import GeoBox, rasterio_crs

#: Top-of-atmosphere blue (B02) reflectance above which a pixel counts as cloud.
BRIGHT_BLUE = 0.25
#: Band index (0-based) of B02 in a 13-band L1C file in band-number order.
B02 = 1


def bright_cloud_shape(l1c: str | os.PathLike, offset: int = 0) -> np.ndarray:
    """The cloud shape of a 13-band Sentinel-2 L1C file: ``True`` where B02 reflectance
    (``(DN + offset) / 10000``) exceeds :data:`BRIGHT_BLUE`."""
    with rasterio.open(l1c) as src:
        blue = src.read(B02 + 1).astype(np.float64)
    return (blue + offset) / 10000.0 > BRIGHT_BLUE


def write_mask(shape: np.ndarray, grid: GeoBox, path: str | os.PathLike) -> Path:
    """``shape`` written as a mask raster (uint8, 1 = cloud) on ``grid`` (same pixel size:
    the shape is laid over the place as it is, cropped or padded with clear pixels)."""
    out = np.zeros(grid.shape, dtype=np.uint8)
    h, w = (min(a, b) for a, b in zip(shape.shape, grid.shape, strict=True))
    out[:h, :w] = shape[:h, :w]
    profile = {
        "driver": "GTiff", "count": 1, "dtype": "uint8", "width": grid.width,
        "height": grid.height, "crs": rasterio_crs(grid), "transform": grid.affine,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out, 1)
    return Path(path)


__all__ = ["BRIGHT_BLUE", "bright_cloud_shape", "write_mask"]
