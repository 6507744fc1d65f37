"""The raster grid: one immutable value (CRS, affine transform, width, height).

Readers, the chip grid, the aligner and the mosaic writer all speak this one value, so a chip, a
condition raster and an output file can never disagree about where a pixel is. It is deliberately
the vocabulary of a rasterio profile (``crs``, ``transform``, ``width``, ``height``) and adds only
what geocopgen needs on top: validation with named errors, the sub-grid of a window, and the
derived grid at another resolution (``at_resolution``) for native-resolution outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geocopgen.errors import GridError, MissingCRSError, TransformError


@dataclass(frozen=True)
class RasterGrid:
    """A north-up pixel grid in a CRS. Equality is exact on all four fields."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    # --- constructors --------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, src: Any, *, source: str | None = None) -> RasterGrid:
        """The grid of an open rasterio dataset, validated (CRS present, transform north-up)."""
        grid = cls(src.crs, src.transform, src.width, src.height)
        grid.validate(source or getattr(src, "name", "input"))
        return grid

    @classmethod
    def from_xarray(cls, array: Any, *, source: str = "xarray input") -> RasterGrid:
        """The grid of a rioxarray-georeferenced ``DataArray`` (``spatial_ref`` coordinate)."""
        crs = array.rio.crs
        grid = cls(crs, array.rio.transform(recalc=True), array.rio.width, array.rio.height)
        grid.validate(source)
        return grid

    # --- cheap facts ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        t = self.transform
        xs = (t.c, t.c + t.a * self.width)
        ys = (t.f, t.f + t.e * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    def __str__(self) -> str:
        crs = self.crs.to_string() if self.crs else "no CRS"
        return f"{self.width}x{self.height} px at {self.res[0]:g} x {self.res[1]:g} in {crs}"

    # --- validation ----------------------------------------------------------------------------
    def validate(self, source: str) -> None:
        """Raise a named error unless there is a CRS and a north-up, non-degenerate transform."""
        if self.crs is None or not self.crs.to_wkt():
            raise MissingCRSError(
                f"{source} has no coordinate reference system; geocopgen needs one to keep the "
                "output georeferenced. Assign it first, e.g. "
                "`gdal_edit.py -a_srs EPSG:32633 FILE` or `da.rio.write_crs(...)`."
            )
        t = self.transform
        if t.b != 0 or t.d != 0:
            raise TransformError(
                f"{source} has a rotated or sheared geotransform ({tuple(t)[:6]}); geocopgen works "
                "on north-up grids only. Warp it to a north-up grid first, e.g. "
                "`gdalwarp -t_srs <its CRS> FILE north_up.tif`."
            )
        if t.a <= 0 or t.e >= 0 or t.is_identity:
            raise TransformError(
                f"{source} has no usable north-up geotransform ({tuple(t)[:6]}): pixel width must "
                "be positive and pixel height negative. Georeference the file (or flip it) first."
            )
        if self.width < 1 or self.height < 1:
            raise GridError(f"{source} has an empty grid ({self.width}x{self.height} px)")

    # --- derived grids -------------------------------------------------------------------------
    def window_transform(self, window: Window) -> Affine:
        """Affine transform of a window's top-left pixel (rasterio's one-line composition)."""
        return window_transform(window, self.transform)

    def window(self, window: Window) -> RasterGrid:
        """The sub-grid covered by ``window``."""
        return RasterGrid(
            self.crs, self.window_transform(window), int(window.width), int(window.height)
        )

    def at_resolution(self, resolution: float) -> RasterGrid:
        """The same origin and extent at another pixel size (e.g. a DEM's native 30 m).

        The width and height are rounded *up* so the new grid covers every input pixel (no
        remainder dropped); the last row/column may therefore reach past the input's edge.
        """
        if resolution <= 0:
            raise GridError(f"resolution must be positive, got {resolution}")
        rx, ry = self.res
        width = math.ceil(self.width * rx / resolution - 1e-9)
        height = math.ceil(self.height * ry / resolution - 1e-9)
        t = self.transform
        transform = Affine(resolution, 0.0, t.c, 0.0, -resolution, t.f)
        return RasterGrid(self.crs, transform, width, height)

    def same_crs(self, other: RasterGrid) -> bool:
        return self.crs == other.crs

    def almost_equals(self, other: RasterGrid, tolerance: float = 1e-6) -> bool:
        """Same CRS and shape, transforms equal within ``tolerance`` pixels.

        Files written by different tools for "one grid" often differ in the last bit of the
        origin (the TerraMind tiles do, by 1e-10 m); that is the same grid, not a resampling job.
        """
        if self.shape != other.shape or self.crs != other.crs:
            return False
        a, b = self.transform, other.transform
        px = min(self.res)
        return all(
            abs(x - y) <= tolerance * px for x, y in zip(tuple(a)[:6], tuple(b)[:6], strict=True)
        )

    def xy_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre x and y coordinates (what rioxarray stores as ``x``/``y``)."""
        t = self.transform
        x = t.c + t.a * (np.arange(self.width) + 0.5)
        y = t.f + t.e * (np.arange(self.height) + 0.5)
        return x, y

    def to_profile(self) -> dict[str, Any]:
        """The grid part of a rasterio profile."""
        return {
            "crs": self.crs,
            "transform": self.transform,
            "width": self.width,
            "height": self.height,
        }
