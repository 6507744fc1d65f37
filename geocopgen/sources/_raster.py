"""Shared by the sources: band files → one float32 physical-unit array on a 10 m grid.

A product arrives as one GeoTIFF per band (Major TOM folders and parquet shards, STAC assets
read by hand), each at its native resolution. :func:`read_product` puts every band onto the
declared target grid, with the modality's resampling and nodata rules, and converts digital
numbers to physical units, so every source hands the same ModalityArray to the rest of
geocopgen. :func:`lazy_modality_array` wraps that loader in one dask chunk per product: nothing
is read until the array is computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.warp import reproject

from geocopgen.errors import DataSourceError
from geocopgen.modalities import Modality, dn_to_reflectance, linear_to_db

#: Where a band's bytes live: a path or URL GDAL opens, or the GeoTIFF bytes themselves.
BandSource = str | bytes

#: Tolerance, in metres, when checking that a band file sits where the grid says it should.
GRID_TOLERANCE_M = 1e-3


def _open(src: BandSource) -> Any:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return MemoryFile(bytes(src)).open()
    return rasterio.open(src)


def _raw_nodata(modality: Modality, file_nodata: float | None) -> list[float]:
    """Raw values that mean "no data" for a modality, besides the file's own nodata tag."""
    values = [file_nodata] if file_nodata is not None else []
    if modality.name.startswith("s2"):
        values.append(0.0)  # Sentinel-2 DN 0 is the no-data value of the L1C/L2A products
    elif modality.name == "dem":
        values += [-32767.0, -32768.0, -9999.0]  # Core-DEM, SRTM and ASTER fill values
    return values


def read_band(
    src: BandSource,
    modality: Modality,
    transform: Affine,
    shape: tuple[int, int],
    crs: CRS | str,
    *,
    label: str = "band",
) -> np.ndarray:
    """Read one band onto ``(transform, shape, crs)`` as float32 raw values with NaN for nodata.

    Bands at the target resolution are read directly; others (S2 20/60 m, DEM 30 m) are
    resampled with the modality's resampling (bilinear), nodata-aware, on the exact same
    bounds: no half-pixel shift.
    """
    try:
        with _open(src) as ds:
            if ds.crs is None or CRS.from_user_input(crs) != ds.crs:
                raise DataSourceError(
                    f"{label}: CRS {ds.crs} differs from the product CRS {crs}; the band files "
                    "of one product must share a CRS"
                )
            h, w = shape
            want = (transform.c, transform.f + h * transform.e, transform.c + w * transform.a)
            have = (ds.bounds.left, ds.bounds.bottom, ds.bounds.right)
            if max(abs(a - b) for a, b in zip(want, have, strict=True)) > GRID_TOLERANCE_M:
                raise DataSourceError(
                    f"{label}: bounds {tuple(ds.bounds)} do not match the product grid "
                    f"(left {want[0]}, bottom {want[1]}, right {want[2]}); the file is not part "
                    "of this product or is cut differently"
                )
            raw = ds.read(1).astype(np.float32)
            for value in _raw_nodata(modality, ds.nodata):
                raw[raw == value] = np.nan
            if ds.shape == shape:
                return raw
            out = np.full(shape, np.nan, dtype=np.float32)
            reproject(
                raw,
                out,
                src_transform=ds.transform,
                src_crs=ds.crs,
                dst_transform=transform,
                dst_crs=ds.crs,
                src_nodata=np.nan,
                dst_nodata=np.nan,
                resampling=Resampling[modality.resampling],
            )
            return out
    except rasterio.errors.RasterioIOError as exc:
        raise DataSourceError(f"{label}: cannot read the GeoTIFF ({exc})") from exc


def to_physical(raw: np.ndarray, modality: Modality, s2_offset: int = 0) -> np.ndarray:
    """Raw stored values → the modality's physical units (float32)."""
    if modality.name.startswith("s2"):
        return dn_to_reflectance(raw, s2_offset).astype(np.float32)
    if modality.name == "s1rtc":
        return linear_to_db(raw).astype(np.float32)
    return raw.astype(np.float32, copy=False)


def read_product(
    bands: Mapping[str, BandSource] | Callable[[], Mapping[str, BandSource]],
    modality: Modality,
    transform: Affine,
    shape: tuple[int, int],
    crs: CRS | str,
    s2_offset: int = 0,
    label: str = "product",
) -> np.ndarray:
    """All bands of a product → ``(band, y, x)`` float32 physical values on the target grid.

    ``bands`` maps the modality's band names (case-insensitive) to band sources, or is a
    callable returning that mapping (so a parquet row group is fetched only when computed).
    """
    if callable(bands):
        bands = bands()
    by_upper = {k.upper(): v for k, v in bands.items()}
    missing = [b for b in modality.band_names if b.upper() not in by_upper]
    if missing:
        raise DataSourceError(
            f"{label}: no {', '.join(missing)} for {modality.long_name} (has "
            f"{', '.join(sorted(bands)) or 'nothing'}); the product is incomplete"
        )
    out = np.stack(
        [
            read_band(by_upper[b.upper()], modality, transform, shape, crs, label=f"{label}/{b}")
            for b in modality.band_names
        ]
    )
    return to_physical(out, modality, s2_offset)


def lazy_modality_array(
    loader: functools.partial,
    modality: Modality,
    transform: Affine,
    shape: tuple[int, int],
    crs: CRS | str,
    attrs: Mapping[str, Any],
) -> xr.DataArray:
    """Wrap a product loader as a lazy ModalityArray (one dask chunk per product)."""
    h, w = shape
    name = f"{modality.name}-{dask.base.tokenize(loader)}"
    data = da.from_delayed(
        dask.delayed(loader, pure=True, name=name)(),
        shape=(modality.n_bands, h, w),
        dtype=np.float32,
    )
    return georeferenced(data, modality, transform, crs, attrs)


def georeferenced(
    data: Any, modality: Modality, transform: Affine, crs: CRS | str, attrs: Mapping[str, Any]
) -> xr.DataArray:
    """A ``(band, y, x)`` array → ModalityArray with pixel-centre coords and rioxarray georef."""
    _, h, w = data.shape
    x = transform.c + (np.arange(w) + 0.5) * transform.a
    y = transform.f + (np.arange(h) + 0.5) * transform.e
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(modality.band_names), "y": y, "x": x},
        name=modality.name,
        attrs={"modality": modality.name, "units": modality.units, **attrs},
    )
    arr = arr.rio.write_crs(crs).rio.write_transform(transform)
    return arr.rio.write_nodata(np.nan, encoded=False)
