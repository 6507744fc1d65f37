"""Put several inputs of one scene onto one grid, with explicit, announced resampling.

Conditions for a translation (say an S2 L2A tile and a 30 m DEM in EPSG:4326) must share one pixel
grid. :func:`align` reprojects every array that is not already on the target grid, lazily (odc-geo
on dask), and says so with a :class:`ResamplingWarning`. The resampling rule is the same as the
readers': bilinear when the target pixels are as fine or finer, average when they are coarser
(more than 1.5x the pixel area), never nearest: every modality here is a continuous field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.xr import xr_reproject
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from geocopgen.errors import GridError, NoOverlapError, ResamplingWarning
from geocopgen.errors import warn as warn_caller
from geocopgen.io.array import modality_array
from geocopgen.io.raster_source import crosses_antimeridian
from geocopgen.io.readers import OpenedInput, bands_on_grid, choose_resampling
from geocopgen.modalities import Modality, get_modality
from geocopgen.raster.grid import (
    GeoBox,
    almost_equal,
    at_resolution,
    describe,
    grid_of,
    pixel_size,
    rasterio_crs,
    xy_coords,
)

K = TypeVar("K")
_ALLOWED = ("bilinear", "average", "cubic", "cubic_spline", "lanczos")
#: Class codes (land cover, cloud masks) cannot be interpolated: nearest, or mode when coarser.
_CATEGORICAL = ("nearest", "mode")


def _resampling_for(modality: Modality, src: GeoBox, dst: GeoBox) -> str:
    """The readers' rule for continuous fields; nearest / mode for class codes."""
    method = choose_resampling(src, dst).name
    if modality.categorical:
        return "mode" if method == "average" else "nearest"
    return method


def utm_grid(obj: xr.DataArray | GeoBox, resolution: float = 10.0) -> GeoBox:
    """A north-up grid at ``resolution`` metres in the UTM zone of the input's centre.

    It covers the input's whole footprint; its origin is snapped to a multiple of the resolution
    so that grids built this way for neighbouring inputs line up.
    """
    grid = grid_of(obj)
    bounds = grid.boundingbox.bbox
    lon0, lat0, lon1, lat1 = transform_bounds(rasterio_crs(grid), "EPSG:4326", *bounds)
    lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    epsg = (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) % 60 + 1
    return _covering_grid(grid, CRS.from_epsg(epsg), resolution)


def model_grid(obj: xr.DataArray | GeoBox, modality: str | None = None) -> GeoBox:
    """The modality's model grid (10 m) for an input: same CRS if projected, else UTM."""
    grid = grid_of(obj)
    name = modality or (obj.attrs.get("modality") if isinstance(obj, xr.DataArray) else None)
    res = get_modality(name).resolution if name else 10.0
    crs = rasterio_crs(grid)
    if crs.is_geographic or not ProjCRS.from_user_input(crs.to_wkt()).is_projected:
        return utm_grid(grid, res)
    if np.allclose(pixel_size(grid), (res, res)):
        return grid
    return at_resolution(grid, res)


def _covering_grid(grid: GeoBox, crs: CRS, resolution: float) -> GeoBox:
    bounds = grid.boundingbox.bbox
    left, bottom, right, top = transform_bounds(rasterio_crs(grid), crs, *bounds, densify_pts=21)
    left = np.floor(left / resolution) * resolution
    top = np.ceil(top / resolution) * resolution
    width = int(np.ceil((right - left) / resolution))
    height = int(np.ceil((top - bottom) / resolution))
    return GeoBox((height, width), Affine(resolution, 0, left, 0, -resolution, top), crs)


def overlaps(a: GeoBox, b: GeoBox) -> bool:
    """True if the two grids' footprints intersect (compared in ``b``'s CRS)."""
    a_crs, b_crs = rasterio_crs(a), rasterio_crs(b)
    l0, b0, r0, t0 = transform_bounds(a_crs, b_crs, *a.boundingbox.bbox, densify_pts=21)
    l1, b1, r1, t1 = b.boundingbox.bbox
    return l0 < r1 and l1 < r0 and b0 < t1 and b1 < t0


def reproject(
    data: xr.DataArray | OpenedInput,
    grid: GeoBox,
    *,
    resampling: str | None = None,
    warn: bool = True,
) -> xr.DataArray:
    """The ModalityArray (or an opened input's) resampled onto ``grid`` (lazy). Unchanged if
    already on it. Only across the antimeridian does an opened input's files matter: they are
    read onto ``grid``; an array alone is refused there."""
    opened = OpenedInput.of(data)
    array = opened.array
    source = str(array.attrs.get("source", "array"))
    src_grid = grid_of(array)
    if src_grid == grid:
        return array
    if almost_equal(src_grid, grid):  # same pixels; only write the target's exact georeference
        return array.rio.write_transform(grid.affine).assign_coords(
            dict(zip(("x", "y"), xy_coords(grid), strict=True))
        )
    if not overlaps(src_grid, grid):
        raise NoOverlapError(
            f"{source} ({describe(src_grid)}, bounds {_fmt(src_grid.boundingbox.bbox)}) does not "
            f"overlap the target grid ({describe(grid)}, bounds {_fmt(grid.boundingbox.bbox)}). "
            "Use inputs of the same place."
        )
    if crosses_antimeridian(rasterio_crs(src_grid), *src_grid.boundingbox.bbox[::2]):
        return _across_antimeridian(opened, grid, warn)
    m = get_modality(array.attrs["modality"])
    method = resampling or _resampling_for(m, src_grid, grid)
    allowed = _CATEGORICAL if m.categorical else _ALLOWED  # class codes are not interpolated
    if method not in allowed:
        raise GridError(
            f"resampling {method!r} is not allowed for {m.long_name}; use one of "
            f"{', '.join(allowed)}"
        )
    if warn:
        warn_caller(
            f"{source}: resampled from {describe(src_grid)} onto {describe(grid)} with {method} "
            "resampling",
            ResamplingWarning,
        )
    out = xr_reproject(array, grid, resampling=method, dst_nodata=np.float32(np.nan))
    attrs = {k: v for k, v in array.attrs.items() if k not in ("modality", "units", "source")}
    attrs.pop("_FillValue", None)
    bands = [str(b) for b in array.band.values]
    return modality_array(out.data.astype(np.float32), grid, m, source=source, bands=bands, **attrs)


def align(
    arrays: Sequence[xr.DataArray | OpenedInput] | Mapping[K, xr.DataArray | OpenedInput],
    like: xr.DataArray | GeoBox | None = None,
    *,
    resampling: str | None = None,
) -> list[xr.DataArray] | dict[K, xr.DataArray]:
    """Every array (or opened input) on one grid: ``like``'s, or the first one's. Lazy; warns for
    each resample."""
    items = list(arrays.items()) if isinstance(arrays, Mapping) else list(enumerate(arrays))
    if not items:
        raise GridError("align() needs at least one array")
    first = items[0][1]
    target = grid_of(like if like is not None else OpenedInput.of(first).array)
    out = [(k, reproject(a, target, resampling=resampling)) for k, a in items]
    return dict(out) if isinstance(arrays, Mapping) else [a for _, a in out]


def _across_antimeridian(opened: OpenedInput, grid: GeoBox, warn: bool) -> xr.DataArray:
    """A raster whose columns run past 180°, read onto ``grid`` from its files, whose warper
    takes longitudes around 180° (:func:`~geocopgen.io.raster_source.warp_source_crs`); odc-geo's
    footprint breaks there. An array with no files behind it is refused in one line."""
    array = opened.array
    source = str(array.attrs.get("source", "array"))
    moved = bands_on_grid(opened, [str(b) for b in array.band.values], grid)
    if moved is None:
        raise GridError(
            f"{source}: its columns cross the antimeridian (180°), which geocopgen reads only "
            "from a file; write it to a GeoTIFF first, or reproject it to a projected CRS."
        )
    if warn:
        warn_caller(
            f"{source}: resampled across the antimeridian from {describe(grid_of(array))} onto "
            f"{describe(grid)}",
            ResamplingWarning,
        )
    return moved


def _fmt(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"
