"""A gap fill's output: the input's stored values with the filled pixels replaced, band by band.

Clear pixels are the input's own stored values, copied **bit for bit** (a file's digital
numbers, offset and dtype kept). Filled pixels are the method's values matched to their clear
surroundings (:func:`matched`), clipped to the modality's physical domain and stored as the
input stores them (:class:`Stored`). Beside the filled raster go ``<stem>_filled`` (0 kept, 1
filled, 255 no data) and, with samples, ``<stem>_std``; each file is written under a temporary
name and renamed into place when complete. A band is composed at a time: memory holds one band
of the input, the method and the mask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import xarray as xr

from geocopgen.io.array import band_array
from geocopgen.io.decoding import Decoding
from geocopgen.io.readers import OpenedInput
from geocopgen.modalities import get_modality
from geocopgen.outputs import check_output, move_into_place, temporary_name
from geocopgen.raster.grid import grid_of, rasterio_crs
from geocopgen.translation.fill_mask import FillMask
from geocopgen.translation.fill_methods import inverse_distance

#: ``<stem>_filled`` values, and what they mean (its tag).
KEPT, FILLED, NO_DATA = 0, 1, 255
FLAG_MEANING = "0 kept from the input, 1 filled, 255 no data"
Values = xr.DataArray | np.ndarray


@dataclass(frozen=True)
class Stored:
    """How the input stores its values: a file's bands (read back raw, decoded and encoded with
    its reading decoding) or, for an array in memory, the physical values themselves.

    ``indexes[i]`` is the file band (1-based) holding the array's band ``i``; the file's other
    bands are copied unchanged.
    """

    array: xr.DataArray
    path: Path | None = None
    decoding: Decoding | None = None
    indexes: tuple[int, ...] = ()

    @classmethod
    def of(cls, opened: OpenedInput) -> Stored:
        """The storage behind an input: its file when it was opened from one local file whose
        bands lie on its grid as stored, else its array."""
        array, files = opened.array, opened.files
        if files is None:
            return cls(array)
        paths = {b.path for b in files.bands}
        path = Path(next(iter(paths)))
        if len(paths) != 1 or any(b.resampling for b in files.bands) or not path.is_file():
            return cls(array)
        by_name = {b.name: b.index for b in files.bands}
        indexes = tuple(by_name[str(b)] for b in array.band.values)
        return cls(array, path, files.decoding, indexes)

    @property
    def count(self) -> int:
        return int(self.profile["count"])

    def band(self, index: int) -> np.ndarray:
        """Stored band ``index`` (1-based, file order) as stored."""
        if self.path is None:
            return np.asarray(self.array.isel(band=index - 1).values, dtype=np.float32)
        with rasterio.open(self.path) as src:
            return src.read(index)

    def array_band(self, index: int) -> int | None:
        """Which band of the array stored band ``index`` holds (``None``: none, copy it)."""
        if self.path is None:
            return index - 1
        return self.indexes.index(index) if index in self.indexes else None

    def physical(self, raw: np.ndarray) -> np.ndarray:
        """Stored values in physical units (NaN invalid)."""
        return raw if self.decoding is None else self.decoding.decode(raw)

    def store(self, raw: np.ndarray, physical: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``raw`` with the pixels ``where`` replaced by ``physical`` stored as the input stores."""
        out = raw.copy()
        if self.decoding is None:
            out[where] = physical[where]
        else:
            nodata = self.profile["nodata"] or 0
            out[where] = self.decoding.encode(physical[where], out.dtype, nodata)
        return out

    @cached_property
    def profile(self) -> dict[str, Any]:
        """The output file's profile: the input's, tiled and compressed (read once)."""
        grid = grid_of(self.array)
        if self.path is None:
            base: dict[str, Any] = {"count": self.array.sizes["band"], "dtype": "float32",
                                    "nodata": float("nan")}  # fmt: skip
        else:
            with rasterio.open(self.path) as src:
                base = {"count": src.count, "dtype": src.dtypes[0], "nodata": src.nodata}
        return {
            **base, "driver": "GTiff", "width": grid.width, "height": grid.height,
            "crs": rasterio_crs(grid), "transform": grid.affine, "tiled": True,
            "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER",
        }  # fmt: skip

    def band_names(self) -> list[str]:
        """A name per stored band: the array's band name where it holds one, else the file's
        description, else ``band_<i>``."""
        names = []
        for index, description in enumerate(self.descriptions, start=1):
            b = self.array_band(index)
            names.append(str(self.array.band.values[b]) if b is not None
                         else description or f"band_{index}")  # fmt: skip
        return names

    @cached_property
    def descriptions(self) -> tuple[str | None, ...]:
        """The stored bands' descriptions (read once)."""
        if self.path is None:
            return tuple(str(b) for b in self.array.band.values)
        with rasterio.open(self.path) as src:
            return src.descriptions


# --- composition --------------------------------------------------------------------------------
def distance_to_clear(clear: np.ndarray, reach: int) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest ``clear`` one, up to ``reach`` (0 on
    clear pixels and beyond ``reach``)."""
    distance = np.zeros(clear.shape, dtype=np.float32)
    reached = torch.from_numpy(clear.astype(np.float32))[None, None]
    for step in range(1, reach + 1):
        grown = torch.nn.functional.max_pool2d(reached, 3, stride=1, padding=1)
        distance[((grown > 0) & (reached == 0))[0, 0].numpy()] = step
        reached = grown
    return distance


def matched(
    physical: np.ndarray, method: np.ndarray, fill: np.ndarray, reach: int | None
) -> np.ndarray:
    """One band of the method's values with the filled pixels moved toward their clear
    surroundings: the residual (input - method) on the clear pixels, inverse-distance
    interpolated into the mask and added, in full (``reach=None``), fading linearly to nothing
    at ``reach`` px from the nearest clear pixel, or not at all (``reach=0``). The method then
    meets the clear pixels without a step, and its level follows theirs."""
    clear = ~fill & np.isfinite(physical) & np.isfinite(method)
    if reach == 0 or not clear.any() or not fill.any():
        return method
    residual = inverse_distance(np.where(clear, physical - method, 0), clear)
    if reach is None:
        weight: np.ndarray | float = 1.0
    else:
        distance = distance_to_clear(clear, reach)
        weight = np.where(distance > 0, (reach + 1 - distance) / (reach + 1), 0.0)
    return np.where(fill, method + weight * residual, method).astype(np.float32)


@dataclass(frozen=True)
class Composition:
    """One fill composed: ``stored`` with ``method`` where ``mask`` says, matched over
    ``reach`` (see :func:`matched`); ``std`` the method's spread over samples, if any."""

    stored: Stored
    method: Values
    mask: FillMask
    reach: int | None
    std: Values | None = None

    @property
    def fill(self) -> np.ndarray:
        return self.mask.fill

    @cached_property
    def written(self) -> np.ndarray:
        """The filled pixels that get a value (the method has one there)."""
        return self.fill & np.isfinite(np.asarray(self.method[0], dtype=np.float32))

    def bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every stored band (1-based index, values as stored) with its filled pixels replaced."""
        domain = get_modality(self.stored.array.attrs["modality"]).domain
        written = self.written
        for index in range(1, self.stored.count + 1):
            raw = self.stored.band(index)
            b = self.stored.array_band(index)
            if b is None or not written.any():
                yield index, raw
                continue
            physical = self.stored.physical(raw)
            values = np.asarray(self.method[b], dtype=np.float32)
            out = np.clip(matched(physical, values, self.fill, self.reach), *domain)
            yield index, self.stored.store(raw, out, written & np.isfinite(out))

    def flags(self) -> np.ndarray:
        """0 kept, 1 filled, 255 no data: invalid in the input and not filled, or masked where
        the method has no value (a condition without data there; the input's value stays)."""
        flags = np.where(self.written, FILLED, KEPT).astype(np.uint8)
        flags[~self.written & self.mask.not_kept] = NO_DATA
        return flags

    def spread(self) -> Iterator[np.ndarray]:
        """The standard deviation of every band over the filled pixels (NaN elsewhere)."""
        written = self.written
        for b in range(len(self.stored.array.band)):
            yield np.where(written, np.asarray(self.std[b], np.float32), np.nan)  # type: ignore[index]


@contextlib.contextmanager
def _atomic(path: Path, profile: Mapping[str, Any], *, overwrite: bool) -> Iterator[Any]:
    """A GeoTIFF written under a temporary name and renamed into place when complete."""
    tmp = temporary_name(path, ".tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            yield dst
        move_into_place(tmp, path, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def output_paths(path: Path, *, spread: bool) -> dict[str, Path]:
    """The filled raster and, beside it, its ``_filled`` flags and (with ``spread``) ``_std``."""
    paths = {"filled": path, "filled_mask": path.with_name(f"{path.stem}_filled{path.suffix}")}
    if spread:
        paths["std"] = path.with_name(f"{path.stem}_std{path.suffix}")
    return paths


def write(
    fill: Composition, path: Path, *, tags: Mapping[str, Any], overwrite: bool
) -> dict[str, Path]:
    """Write the composition (each file atomically); returns the paths written."""
    paths = output_paths(path, spread=fill.std is not None)
    for p in paths.values():
        check_output(p, overwrite=overwrite)
    text = {k: str(v) for k, v in tags.items()}
    profile = fill.stored.profile
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(_atomic(path, profile, overwrite=overwrite))
        for index, values in fill.bands():
            main.write(values, index)
        main.update_tags(**text)
        for i, description in enumerate(fill.stored.descriptions, start=1):
            if description:
                main.set_band_description(i, description)
        flags = {**profile, "count": 1, "dtype": "uint8", "nodata": NO_DATA}
        side = stack.enter_context(_atomic(paths["filled_mask"], flags, overwrite=overwrite))
        side.write(fill.flags(), 1)
        side.update_tags(MEANING=FLAG_MEANING, **text)
        if fill.std is not None:
            bands = len(fill.stored.array.band)
            spread = {**profile, "count": bands, "dtype": "float32", "nodata": float("nan")}
            sd = stack.enter_context(_atomic(paths["std"], spread, overwrite=overwrite))
            for i, values in enumerate(fill.spread(), start=1):
                sd.write(values, i)
            units = get_modality(fill.stored.array.attrs["modality"]).units
            sd.update_tags(UNITS=units, **text)
    return paths


def in_memory(fill: Composition, *, tags: Mapping[str, Any]) -> xr.Dataset:
    """The composition as a Dataset on the input grid: ``filled`` (the stored values),
    ``filled_mask`` (the flags) and, with samples, ``std``."""
    grid = grid_of(fill.stored.array)
    attrs = {str(k).lower(): str(v) for k, v in tags.items()}
    names = fill.stored.band_names()
    values = np.stack([v for _, v in fill.bands()])
    nodata = fill.stored.profile["nodata"]
    out = {"filled": band_array(values, grid, names, name="filled", attrs=attrs, nodata=nodata)}
    flags = band_array(fill.flags()[None], grid, ["filled"], name="filled_mask",
                       attrs={"meaning": FLAG_MEANING}, nodata=NO_DATA)  # fmt: skip
    out["filled_mask"] = flags.isel(band=0, drop=True)
    if fill.std is not None:
        spread = np.stack(list(fill.spread()))
        out["std"] = band_array(spread, grid, _std_names(fill), name="std", attrs={})
    return xr.Dataset(out, attrs=attrs)


def _std_names(fill: Composition) -> list[str]:
    return [f"{b}_std" for b in fill.stored.array.band.values]


def read(paths: Mapping[str, Path], fill: Composition) -> xr.Dataset:
    """The written ``fill`` read back lazily, as :func:`in_memory` returns it."""
    import rioxarray

    chunks = {"band": -1, "y": 1024, "x": 1024}
    opened = {key: rioxarray.open_rasterio(path, chunks=chunks, mask_and_scale=False)
              for key, path in paths.items()}  # fmt: skip
    out = {key: array.rename(key) for key, array in opened.items()}
    out["filled"] = out["filled"].assign_coords(band=fill.stored.band_names())
    if "std" in out:
        out["std"] = out["std"].assign_coords(band=_std_names(fill))
    out["filled_mask"] = out["filled_mask"].isel(band=0, drop=True)
    attrs = {str(k).lower(): v for k, v in opened["filled"].attrs.items()}
    return xr.Dataset(out, attrs=attrs)


__all__ = [
    "FILLED",
    "KEPT",
    "NO_DATA",
    "Composition",
    "Stored",
    "distance_to_clear",
    "in_memory",
    "matched",
    "output_paths",
    "read",
    "write",
]
