"""xarray objects as inputs: a rioxarray-georeferenced DataArray becomes a ModalityArray.

Accepted: dims ``("band", "y", "x")`` or ``("y", "x")``, numpy- or dask-backed, with a CRS
(``.rio.crs``). Values are taken as raw storage (Sentinel-2 DNs if integer, Sentinel-1 per
``s1_scale``) unless the array already says it is physical (a float array with a ``modality`` attr,
as every geocopgen reader returns). Decoding stays lazy (``map_blocks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from geocopgen.errors import BandMismatchError, MissingCRSError
from geocopgen.io.array import DEFAULT_CHUNK, modality_array
from geocopgen.io.decoding import PHYSICAL, S1_LINEAR, S2_DN, Decoding
from geocopgen.io.detect import bands_match, detect_modality
from geocopgen.io.evidence import decide_s1_scale, decide_s2_offset
from geocopgen.modalities import Modality
from geocopgen.raster.grid import grid_of


def from_xarray(
    array: xr.DataArray,
    modality: str | Modality | None = None,
    *,
    offset: int | None = None,
    s1_scale: str = "auto",
) -> xr.DataArray:
    """A georeferenced DataArray → ModalityArray (lazy)."""
    source = str(array.attrs.get("source", array.name or "xarray input"))
    if array.ndim == 2:
        array = array.expand_dims("band")
    if array.ndim != 3:
        raise BandMismatchError(
            f"{source}: expected dims (band, y, x) or (y, x), got {array.dims}. Select one time "
            "step / variable first."
        )
    band_dim = next(d for d in array.dims if d not in (array.rio.x_dim, array.rio.y_dim))
    array = array.transpose(band_dim, array.rio.y_dim, array.rio.x_dim)
    if array.rio.crs is None:
        raise MissingCRSError(
            f"{source} has no CRS; set one with `da.rio.write_crs('EPSG:32633')` first."
        )
    grid = grid_of(array, source=source)
    names = [str(v) for v in array[band_dim].values] if band_dim in array.coords else []
    detection = detect_modality(
        path=Path(source).name or "xarray",
        count=array.shape[0],
        band_names=names,
        tags={"MODALITY": array.attrs["modality"]} if "modality" in array.attrs else {},
        stated=modality,
    )
    m = detection.modality
    if names and bands_match(m, names):
        upper = [n.upper() for n in names]
        array = array.isel({band_dim: [upper.index(b.upper()) for b in m.band_names]})

    data = (
        array.data
        if isinstance(array.data, dsa.Array)
        else dsa.from_array(
            np.asarray(array.data), chunks=(array.shape[0], DEFAULT_CHUNK, DEFAULT_CHUNK)
        )
    )
    decoding = _decoding_for(array, m, offset, s1_scale, source)
    physical = data.map_blocks(decoding.decode, dtype=np.float32)
    return modality_array(physical, grid, m, source=source, **decoding.reading_attrs())


def _decoding_for(
    array: xr.DataArray, m: Modality, offset: int | None, s1_scale: str, source: str
) -> Decoding:
    declared = array.rio.nodata if array.rio.nodata is not None else array.rio.encoded_nodata
    nodata = () if declared is None else (float(declared),)
    nan_is_nodata = True  # xarray's own convention: NaN means missing
    already_physical = "modality" in array.attrs and array.dtype.kind == "f"
    if already_physical:
        return Decoding(m, PHYSICAL, 0, nodata, nan_is_nodata, source)

    def sample(_names: Any) -> np.ndarray:
        step_y = max(1, array.shape[1] // 512)
        step_x = max(1, array.shape[2] // 512)
        return np.asarray(array.data[:, ::step_y, ::step_x]).ravel()

    if m.name.startswith("s2") and array.dtype.kind in "iu":
        product_id = array.attrs.get("product_id") or array.attrs.get("PRODUCT_ID")
        tags = {k: v for k, v in array.attrs.items() if isinstance(v, (str, int, float))}
        if "time" in array.coords and array["time"].size == 1:
            tags.setdefault("datetime", str(np.datetime_as_string(array["time"].values, "D")))
        off, _ = decide_s2_offset(
            offset if offset is not None else array.attrs.get("s2_offset"),
            product_id=product_id,
            tags=tags,
            sample=sample,
            source=source,
        )
        return Decoding(m, S2_DN, off, nodata, nan_is_nodata, source)
    if m.name == "s1rtc":
        scale, _ = decide_s1_scale(
            s1_scale, path=Path(source), tags={}, sample=sample, nodata=nodata, source=source
        )
        encoding = S1_LINEAR if scale == "linear" else PHYSICAL
        return Decoding(m, encoding, 0, nodata, nan_is_nodata, source)
    return Decoding(m, PHYSICAL, 0, nodata, nan_is_nodata, source)
