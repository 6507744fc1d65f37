"""Put several inputs of one scene onto one grid, with explicit, announced resampling.

Conditions for a translation (say an S2 L2A tile and a 30 m DEM in EPSG:4326) must share one pixel
grid. :func:`align` reprojects every array that is not already on the target grid, lazily (odc-geo
on dask), and says so with a :class:`ResamplingWarning`. The resampling rule is the same as the
readers': bilinear when the target pixels are as fine or finer, average when they are coarser
(more than 1.5x the pixel area), never nearest: every modality here is a continuous field.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_reproject
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from geocopgen.errors import GridError, NoOverlapError, ResamplingWarning
from geocopgen.io.readers import choose_resampling, modality_array
from geocopgen.modalities import get_modality
from geocopgen.rastergrid import RasterGrid

K = TypeVar("K")
_ALLOWED = ("bilinear", "average", "cubic", "cubic_spline", "lanczos")


def grid_of(obj: xr.DataArray | RasterGrid) -> RasterGrid:
    """The RasterGrid of a ModalityArray (or the grid itself)."""
    if isinstance(obj, RasterGrid):
        return obj
    return RasterGrid.from_xarray(obj, source=str(obj.attrs.get("source", "array")))


def utm_grid(obj: xr.DataArray | RasterGrid, resolution: float = 10.0) -> RasterGrid:
    """A north-up grid at ``resolution`` metres in the UTM zone of the input's centre.

    It covers the input's whole footprint; its origin is snapped to a multiple of the resolution
    so that grids built this way for neighbouring inputs line up.
    """
    grid = grid_of(obj)
    lon0, lat0, lon1, lat1 = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds)
    lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    epsg = (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) % 60 + 1
    return _covering_grid(grid, CRS.from_epsg(epsg), resolution)


def model_grid(obj: xr.DataArray | RasterGrid, modality: str | None = None) -> RasterGrid:
    """The modality's model grid (10 m) for an input: same CRS if projected, else UTM."""
    grid = grid_of(obj)
    name = modality or (obj.attrs.get("modality") if isinstance(obj, xr.DataArray) else None)
    res = get_modality(name).resolution if name else 10.0
    if grid.crs.is_geographic or not ProjCRS.from_user_input(grid.crs.to_wkt()).is_projected:
        return utm_grid(grid, res)
    if np.isclose(grid.res[0], res) and np.isclose(grid.res[1], res):
        return grid
    return grid.at_resolution(res)


def _covering_grid(grid: RasterGrid, crs: CRS, resolution: float) -> RasterGrid:
    left, bottom, right, top = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
    left = np.floor(left / resolution) * resolution
    top = np.ceil(top / resolution) * resolution
    width = int(np.ceil((right - left) / resolution))
    height = int(np.ceil((top - bottom) / resolution))
    return RasterGrid(crs, Affine(resolution, 0, left, 0, -resolution, top), width, height)


def overlaps(a: RasterGrid, b: RasterGrid) -> bool:
    """True if the two grids' footprints intersect (compared in ``b``'s CRS)."""
    l0, b0, r0, t0 = transform_bounds(a.crs, b.crs, *a.bounds, densify_pts=21)
    l1, b1, r1, t1 = b.bounds
    return l0 < r1 and l1 < r0 and b0 < t1 and b1 < t0


def reproject(
    array: xr.DataArray,
    grid: RasterGrid,
    *,
    resampling: str | None = None,
    warn: bool = True,
) -> xr.DataArray:
    """The ModalityArray resampled onto ``grid`` (lazy). Unchanged if already on it."""
    source = str(array.attrs.get("source", "array"))
    src_grid = grid_of(array)
    if src_grid == grid:
        return array
    if src_grid.almost_equals(grid):  # same pixels; only write the target's exact georeference
        return array.rio.write_transform(grid.transform).assign_coords(
            dict(zip(("x", "y"), grid.xy_coords(), strict=True))
        )
    if not overlaps(src_grid, grid):
        raise NoOverlapError(
            f"{source} ({src_grid}, bounds {_fmt(src_grid.bounds)}) does not overlap the target "
            f"grid ({grid}, bounds {_fmt(grid.bounds)}). Use inputs of the same place."
        )
    method = resampling or choose_resampling(src_grid, grid).name
    if method not in _ALLOWED:
        raise GridError(
            f"resampling {method!r} is not allowed for continuous physical values; use one of "
            f"{', '.join(_ALLOWED)}"
        )
    if warn:
        warnings.warn(
            f"{source}: resampled from {src_grid} onto {grid} with {method} resampling",
            ResamplingWarning,
            stacklevel=2,
        )
    gbox = GeoBox((grid.height, grid.width), grid.transform, grid.crs.to_wkt())
    out = xr_reproject(array, gbox, resampling=method, dst_nodata=np.float32(np.nan))
    m = get_modality(array.attrs["modality"])
    attrs = {k: v for k, v in array.attrs.items() if k not in ("modality", "units", "source")}
    attrs.pop("_FillValue", None)
    return modality_array(out.data.astype(np.float32), grid, m, source=source, **attrs)


def align(
    arrays: Sequence[xr.DataArray] | Mapping[K, xr.DataArray],
    like: xr.DataArray | RasterGrid | None = None,
    *,
    resampling: str | None = None,
) -> list[xr.DataArray] | dict[K, xr.DataArray]:
    """Every array on one grid: ``like``'s, or the first array's. Lazy; warns for each resample."""
    items = list(arrays.items()) if isinstance(arrays, Mapping) else list(enumerate(arrays))
    if not items:
        raise GridError("align() needs at least one array")
    target = grid_of(like) if like is not None else grid_of(items[0][1])
    out = [(k, reproject(a, target, resampling=resampling)) for k, a in items]
    return dict(out) if isinstance(arrays, Mapping) else [a for _, a in out]


def _fmt(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"
