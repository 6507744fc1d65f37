"""A region's grid is one value: odc-geo's :class:`~odc.geo.geobox.GeoBox` (shape, affine, CRS).

Readers, alignment, chips, the latent canvas, the mosaic writer, Major TOM cells, STAC loads and
latent-store records all speak it, so a chip, a condition raster and an output file can never
disagree about where a pixel is. GeoBox already is the ecosystem's value (odc-stac returns it):
it compares and hashes exactly, slices by window (``gbox[r0:r1, c0:c1]`` is the sub-grid of a
window) and converts between CRSs. What geocopgen adds is a handful of rules, as functions here:

* :func:`grid_of`: the grid of a rasterio dataset or a rioxarray ``DataArray``, validated with
  named errors (:func:`validate_grid`);
* :func:`at_resolution`: the one way to derive a coarser (or finer) grid from a scene grid, same
  origin, pixel edges on the scene's (20/30/60 m groups, the 8x latent grid);
* :func:`almost_equal`, :func:`xy_coords`, :func:`pixel_size`, :func:`describe`;
* :func:`rasterio_crs` and :func:`grid_profile`: the boundary to rasterio, which wants its own
  CRS type (``rasterio.open``, ``WarpedVRT``, ``transform_bounds``).

Why not ``GeoBox.zoom_to(resolution=...)`` for :func:`at_resolution`: it is bit-identical for
every grid measured (10 m scenes of 1..10980 px to 20/30/60/80 m, all rasters in the test data),
but it ignores up to 1/100 of an output pixel when rounding the size (``snap_grid`` ``tol``), so
1001 px at 10 m → 1000 m gives 10 px, not 11, and a 10.0000001 m grid of 1068 px → 30 m gives
356 px where the rule "cover every input pixel" gives 357. geocopgen keeps its rule (round up,
with 1e-9 of slack for float noise) in one function.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.crs import CRS
from rasterio.windows import Window

from geocopgen.errors import GridError, MissingCRSError, TransformError

__all__ = [
    "GeoBox",
    "almost_equal",
    "at_resolution",
    "describe",
    "grid_of",
    "grid_profile",
    "make_grid",
    "pixel_size",
    "rasterio_crs",
    "sub_grid",
    "validate_grid",
    "xy_coords",
]


# --- constructors ------------------------------------------------------------------------------
def make_grid(crs: Any, transform: Affine, width: int, height: int) -> GeoBox:
    """A GeoBox from the four fields of a rasterio profile (an empty CRS counts as none)."""
    if crs is not None and hasattr(crs, "to_wkt") and not crs.to_wkt():
        crs = None
    return GeoBox((int(height), int(width)), transform, crs)


def grid_of(obj: Any, *, source: str | None = None) -> GeoBox:
    """The validated grid of a GeoBox (returned as is), a rioxarray ``DataArray``/``Dataset`` or
    an open rasterio dataset.

    ``source`` names the input in errors (default: the array's ``source`` attr, else ``"array"``;
    the dataset's ``name``).
    """
    if isinstance(obj, GeoBox):
        return obj
    if isinstance(obj, (xr.DataArray, xr.Dataset)):
        label = source or str(obj.attrs.get("source", "array"))
        rio = obj.rio
        grid = make_grid(rio.crs, rio.transform(recalc=True), rio.width, rio.height)
    else:
        label = source or getattr(obj, "name", "input")
        grid = make_grid(obj.crs, obj.transform, obj.width, obj.height)
    validate_grid(grid, label)
    return grid


# --- validation --------------------------------------------------------------------------------
def validate_grid(grid: GeoBox, source: str) -> None:
    """Raise a named error unless there is a CRS and a north-up, non-degenerate transform."""
    if grid.crs is None:
        raise MissingCRSError(
            f"{source} has no coordinate reference system; geocopgen needs one to keep the "
            "output georeferenced. Assign it first, e.g. "
            "`gdal_edit.py -a_srs EPSG:32633 FILE` or `da.rio.write_crs(...)`."
        )
    t = grid.affine
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
    if grid.width < 1 or grid.height < 1:
        raise GridError(f"{source} has an empty grid ({grid.width}x{grid.height} px)")


# --- cheap facts -------------------------------------------------------------------------------
def pixel_size(grid: GeoBox) -> tuple[float, float]:
    """Pixel size (x, y) in CRS units, both positive."""
    t = grid.affine
    return (abs(t.a), abs(t.e))


def describe(grid: GeoBox) -> str:
    """``'1068x1068 px at 10 x 10 in EPSG:32633'``: for messages and the RESAMPLED_TO tag."""
    crs = rasterio_crs(grid).to_string() if grid.crs is not None else "no CRS"
    rx, ry = pixel_size(grid)
    return f"{grid.width}x{grid.height} px at {rx:g} x {ry:g} in {crs}"


def xy_coords(grid: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre x and y coordinates (what rioxarray stores as ``x``/``y``)."""
    t = grid.affine
    x = t.c + t.a * (np.arange(grid.width) + 0.5)
    y = t.f + t.e * (np.arange(grid.height) + 0.5)
    return x, y


def almost_equal(a: GeoBox, b: GeoBox, tolerance: float = 1e-6) -> bool:
    """Same CRS and shape, transforms equal within ``tolerance`` pixels.

    Files written by different tools for "one grid" often differ in the last bit of the origin
    (the TerraMind tiles do, by 1e-10 m); that is the same grid, not a resampling job.
    """
    if a.shape != b.shape or a.crs != b.crs:
        return False
    px = min(pixel_size(a))
    return all(
        abs(x - y) <= tolerance * px
        for x, y in zip(tuple(a.affine)[:6], tuple(b.affine)[:6], strict=True)
    )


# --- derived grids -----------------------------------------------------------------------------
def sub_grid(grid: GeoBox, window: Window) -> GeoBox:
    """The sub-grid a rasterio window covers: ``grid[rows, cols]`` (clipped to the grid)."""
    rows, cols = window.toslices()
    return grid[rows, cols]


def at_resolution(grid: GeoBox, resolution: float) -> GeoBox:
    """The same origin and extent at another pixel size (a 20/30/60 m group, the latent grid).

    The origin is the scene's, so every coarse pixel edge that falls inside the scene lies on a
    scene pixel edge when ``resolution`` is a multiple of the scene's pixel size. The width and
    height are rounded *up* so the new grid covers every input pixel (no remainder dropped); the
    last row/column may therefore reach past the input's edge. See the module notes for why this
    is not ``GeoBox.zoom_to``.
    """
    if resolution <= 0:
        raise GridError(f"resolution must be positive, got {resolution}")
    rx, ry = pixel_size(grid)
    width = math.ceil(grid.width * rx / resolution - 1e-9)
    height = math.ceil(grid.height * ry / resolution - 1e-9)
    t = grid.affine
    return GeoBox((height, width), Affine(resolution, 0.0, t.c, 0.0, -resolution, t.f), grid.crs)


# --- the rasterio boundary ---------------------------------------------------------------------
def rasterio_crs(grid: GeoBox) -> CRS:
    """The grid's CRS as rasterio's type, exactly the CRS the grid was built from.

    odc-geo keeps the spelling it was given (``EPSG:xxxx``, or the dataset's own WKT), so a CRS
    read from a file goes back to rasterio unchanged, custom WKT included.
    """
    return _rasterio_crs(str(grid.crs))


@lru_cache(maxsize=64)
def _rasterio_crs(spelling: str) -> CRS:
    return CRS.from_user_input(spelling)


def grid_profile(grid: GeoBox) -> dict[str, Any]:
    """The grid part of a rasterio profile (also the grid keywords of ``WarpedVRT``)."""
    return {
        "crs": rasterio_crs(grid),
        "transform": grid.affine,
        "width": grid.width,
        "height": grid.height,
    }
