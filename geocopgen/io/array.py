"""The ModalityArray: ``(band, y, x)`` float32 data wrapped with its grid as a georeferenced
``xarray.DataArray`` (the project's data contract; see :mod:`geocopgen.io.readers`).

Every reader, the aligner, the STAC source and the in-memory outputs build their arrays here, so
the coordinates, CRS, transform and nodata of a ModalityArray are written one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from geocopgen.modalities import Modality
from geocopgen.raster.grid import GeoBox, rasterio_crs, xy_coords

#: Default dask chunk (pixels per side); chip reads are windowed whatever the chunking.
DEFAULT_CHUNK = 1024


def modality_array(
    data: Any,
    grid: GeoBox,
    modality: Modality,
    *,
    source: str,
    bands: Sequence[str] | None = None,
    **attrs: Any,
) -> xr.DataArray:
    """Wrap a ``(band, y, x)`` float32 array as a georeferenced ModalityArray: every band of
    ``modality``, or the subset ``bands`` (one resolution group of it, say)."""
    attrs = {"modality": modality.name, "units": modality.units, "source": source, **attrs}
    names = modality.band_names if bands is None else bands
    return band_array(data, grid, names, name=modality.name, attrs=attrs)


def band_array(
    data: Any,
    grid: GeoBox,
    bands: Sequence[str],
    *,
    name: str,
    attrs: Mapping[str, Any],
    nodata: float | None = np.nan,
) -> xr.DataArray:
    """Wrap any ``(band, y, x)`` array on ``grid`` (a ModalityArray, the sample bands of a
    translation, a categorical output) with its coordinates, CRS, transform and nodata
    (``None``: none declared, as a file may have)."""
    x, y = xy_coords(grid)
    array = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(bands), "y": y, "x": x},
        attrs=dict(attrs),
        name=name,
    )
    array = array.rio.write_crs(rasterio_crs(grid))
    array = array.rio.write_transform(grid.affine)
    return array if nodata is None else array.rio.write_nodata(nodata, encoded=False)
