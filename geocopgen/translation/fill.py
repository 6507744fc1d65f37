"""Gap filling: Sentinel-2 pixels under clouds or in nodata gaps, filled from the clear pixels
around them and from other modalities (Sentinel-1, a DEM), on the input's own grid and dtype.

1. **What is filled** is a mask on the input grid (:mod:`geocopgen.translation.fill_mask`).
2. **Values for the masked pixels** come from one of three methods:

   * ``"model"``: a COP-GEN-layout translation of the input's modality in which the clear part of
     the input is a condition: at every solver call the latent cells whose pixels are all clear
     are held to the encoded input (:class:`~geocopgen.translation.grouped.Known`), the rest is
     generated beside them on the same seamless canvases, and the other modalities condition the
     whole scene;
   * ``"interpolate"``: GDAL's inverse-distance fill (:func:`rasterio.fill.fillnodata`) of each
     band from the clear pixels;
   * ``"ridge"``: a per-pixel ridge regression from the conditions' bands (S1 VV and VH, a DEM)
     to each band, fitted on the clear pixels of the same scene.

3. **Composition.** Clear pixels are copied from the input **bit for bit** (its stored values:
   Sentinel-2 digital numbers stay digital numbers, with the input's offset). Filled values are
   clipped to the modality's physical domain and stored as the input stores them. Filled pixels
   within ``feather`` pixels of a clear one are moved toward their clear neighbours: by the local
   mean of (input - method) over the clear pixels within ``feather`` pixels, weighted from 1 next
   to a clear pixel down to 0 at ``feather + 1`` pixels, so no step is left at the mask's edge;
   clear pixels are never touched.

A latent cell is 8 pixels of its resolution group: 80 m for the 10 m bands, 160 m at 20 m and
480 m at 60 m. A cell is held to the input only if every one of its pixels is clear, so a thin
mask (a 20 m cloud edge) makes whole cells generated around it; the copy back of every clear
pixel and the feathering keep that from showing (docs/gap-filling.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import xarray as xr
from rasterio.fill import fillnodata
from rasterio.windows import Window

from geocopgen.errors import ConfigError, GeoCopGenWarning, InputError, warn
from geocopgen.evaluation.baselines import LinearBaseline
from geocopgen.io.align import reproject
from geocopgen.io.array import band_array
from geocopgen.io.codecs import Codec
from geocopgen.modalities import get_modality
from geocopgen.outputs import check_output, move_into_place, temporary_name
from geocopgen.raster.grid import GeoBox, grid_of, rasterio_crs
from geocopgen.translation import fill_mask
from geocopgen.translation.fill_mask import FillMask

METHODS = ("model", "interpolate", "ridge")
#: Default feathering distance in pixels.
FEATHER_PX = 3
#: Rows composed at a time (plus the feathering halo above and below).
BLOCK_ROWS = 256
#: At most this many clear pixels fit the ridge baseline (a regular subsample beyond).
RIDGE_PIXELS = 200_000
#: ``filled`` sidecar values.
KEPT, FILLED, NO_DATA = 0, 1, 255


@dataclass(frozen=True)
class FillOptions:
    """What to fill and how: ``mask`` (``"nodata"``, ``"scl"``, ``"model"`` or a mask raster's
    path), ``dilate`` (pixels the mask grows by), ``method`` (:data:`METHODS`) and ``feather``
    (pixels inside the mask's edge moved toward their clear neighbours)."""

    mask: str | Path = "nodata"
    dilate: int = 0
    method: str = "model"
    feather: int = FEATHER_PX

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.feather < 0:
            raise ConfigError(f"feather must be 0 or more pixels, got {self.feather}")
        if self.dilate < 0:
            raise ConfigError(f"dilate must be 0 or more pixels, got {self.dilate}")


@dataclass(frozen=True)
class Stored:
    """How the input stores its values: a file's bands (read back raw, decoded and encoded with
    its reading codec) or, for an array in memory, the physical values themselves.

    ``indexes[i]`` is the file band (1-based) holding the array's band ``i``; the file's other
    bands (a scene classification, say) are copied unchanged.
    """

    array: xr.DataArray
    path: Path | None = None
    codec: Codec | None = None
    indexes: tuple[int, ...] = ()

    @classmethod
    def of(cls, array: xr.DataArray) -> Stored:
        """The storage behind ``array``: its file when it was opened from one file whose bands
        lie on the array's grid, else the array."""
        from geocopgen.io.readers import plan_input

        source = Path(str(array.attrs.get("source", "")))
        if not source.is_file():
            return cls(array)
        plan = plan_input(source, array.attrs["modality"], offset=array.attrs.get("s2_offset"))
        paths = {b.path for b in plan.bands}
        if len(paths) != 1 or any(b.resampling for b in plan.bands) or plan.grid != grid_of(array):
            return cls(array)
        by_name = {b.name: b.index for b in plan.bands}
        indexes = tuple(by_name[str(b)] for b in array.band.values)
        return cls(array, source, plan.codec, indexes)

    def raw(self, rows: slice) -> np.ndarray:
        """Every stored band of the rows (file order, stored dtype)."""
        if self.path is None:
            return np.asarray(self.array.isel(y=rows).values, dtype=np.float32)
        with rasterio.open(self.path) as src:
            window = Window(0, rows.start, src.width, rows.stop - rows.start)
            return src.read(window=window)

    def physical(self, raw: np.ndarray) -> np.ndarray:
        """The array's bands of ``raw`` in physical units (NaN invalid)."""
        if self.codec is None:
            return raw
        return self.codec.decode(raw[[i - 1 for i in self.indexes]])

    def store(self, raw: np.ndarray, physical: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``raw`` with the pixels ``where`` replaced by ``physical`` stored as the input stores."""
        out = raw.copy()
        if self.codec is None:
            out[:, where] = physical[:, where]
            return out
        encoded = self.codec.encode(physical[:, where], self.dtype, self.nodata)
        for band, index in enumerate(self.indexes):
            out[index - 1, where] = encoded[band]
        return out

    @property
    def dtype(self) -> np.dtype:
        if self.path is None:
            return np.dtype(np.float32)
        with rasterio.open(self.path) as src:
            return np.dtype(src.dtypes[0])

    @property
    def nodata(self) -> float:
        if self.path is None:
            return float("nan")
        with rasterio.open(self.path) as src:
            return src.nodata if src.nodata is not None else 0

    def profile(self) -> dict[str, Any]:
        """The output file's profile: the input's, tiled and compressed."""
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

    def descriptions(self) -> tuple[str | None, ...]:
        if self.path is None:
            return tuple(str(b) for b in self.array.band.values)
        with rasterio.open(self.path) as src:
            return src.descriptions


# --- the mask -----------------------------------------------------------------------------------
def invalid_pixels(array: xr.DataArray) -> np.ndarray:
    """Pixels where any band of ``array`` is invalid (computed window by window by dask)."""
    return np.asarray(array.isnull().any("band").values)


def resolve_mask(
    array: xr.DataArray, options: FillOptions, *, model_mask: Any = None
) -> FillMask:
    """The pixels to fill on ``array``'s grid: from ``options.mask``, dilated. ``model_mask``
    makes the model's cloud mask on request (a callable of the array)."""
    grid = grid_of(array)
    source = str(options.mask)
    if source == "nodata":
        fill = invalid_pixels(array)
    elif source == "scl":
        fill = _scl_on(fill_mask.scl_layer(array.attrs.get("source", "")), grid)
    elif source == "model":
        if model_mask is None:
            raise ConfigError("mask='model' needs a COP-GEN-layout model with a cloud-mask slot")
        fill = model_mask(array)
    else:
        fill = fill_mask.from_raster(source, grid)
    fill = fill_mask.dilate(fill, options.dilate)
    return FillMask(fill, fill_mask.describe_source(options.mask))


def _scl_on(path: Path, grid: GeoBox) -> np.ndarray:
    """A scene classification raster's filled classes on ``grid`` (nearest neighbour)."""
    with rasterio.open(path) as src:
        classes = src.read(1)
        return fill_mask.from_scl(fill_mask.nearest(classes, src.transform, src.crs, grid))


# --- the baselines ------------------------------------------------------------------------------
def interpolated(array: xr.DataArray, fill: np.ndarray) -> np.ndarray:
    """GDAL's inverse-distance fill of every band of ``array`` from its clear valid pixels:
    ``(bands, H, W)`` physical values."""
    values = np.asarray(array.values, dtype=np.float32)
    keep = (~fill & np.isfinite(values).all(0)).astype(np.uint8)
    distance = max(values.shape[1:])
    out = np.empty_like(values)
    for b, band in enumerate(values):
        out[b] = fillnodata(np.nan_to_num(band), mask=keep, max_search_distance=distance,
                            smoothing_iterations=0)  # fmt: skip
    return out


def ridge_filled(
    array: xr.DataArray, conditions: Mapping[str, xr.DataArray], fill: np.ndarray
) -> np.ndarray:
    """Each band of ``array`` predicted per pixel from the conditions' bands by a ridge
    regression fitted on the scene's clear pixels (:class:`~geocopgen.evaluation.baselines.
    LinearBaseline`): ``(bands, H, W)``, NaN where a condition has no data."""
    if not conditions:
        raise ConfigError("method='ridge' predicts from other modalities; give --cond s1rtc=...")
    grid = grid_of(array)
    x = np.concatenate(
        [np.asarray(reproject(c, grid, warn=False).values, np.float32) for c in conditions.values()]
    )
    y = np.asarray(array.values, dtype=np.float32)
    train = ~fill & np.isfinite(y).all(0) & np.isfinite(x).all(0)
    if train.sum() <= x.shape[0]:
        raise InputError(
            f"{array.attrs.get('source', 'the input')}: too few clear pixels where the "
            "conditions have data to fit the ridge baseline"
        )
    rows = np.flatnonzero(train.ravel())[:: max(1, int(train.sum()) // RIDGE_PIXELS)]
    flat_x, flat_y = x.reshape(len(x), -1)[:, rows], y.reshape(len(y), -1)[:, rows]
    fitted = LinearBaseline().fit([flat_x[:, :, None]], [flat_y[:, :, None]])
    return fitted.predict(x).astype(np.float32)


# --- the model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFill:
    """The model's values for a fill on the input grid: the mean (``(bands, H, W)``), the
    standard deviation over samples (``None`` for one sample) and the translation's tags."""

    mean: xr.DataArray
    std: xr.DataArray | None
    tags: Mapping[str, Any]


def model_values(
    model: Any,
    array: xr.DataArray,
    conditions: Mapping[str, xr.DataArray],
    fill: np.ndarray,
    sampling: Any,
    *,
    when: Any = None,
    dn_policy: str = "model",
    path: Path | None = None,
    tags: Mapping[str, Any] | None = None,
) -> ModelFill:
    """Translate ``array``'s modality with its clear cells held (``fill`` on its grid: the pixels
    to fill), conditioned on ``conditions``, onto ``array``'s grid; into ``path`` (a temporary
    GeoTIFF, read back lazily) or memory."""
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.io.align import model_grid
    from geocopgen.options import WriteOptions
    from geocopgen.translation.grouped import Keep, plan_grouped
    from geocopgen.translation.grouped_output import run_grouped_into

    if not isinstance(model, CopgenModel):
        raise ConfigError(
            "gap filling with method='model' needs a COP-GEN-layout model (the bundled model or "
            "a converted COP-GEN); use method='interpolate' or 'ridge' with this one"
        )
    place = grid_of(array)
    scene = model_grid(place, None)
    not_kept = fill | invalid_pixels(array)
    kept = array.where(xr.DataArray(~not_kept, dims=("y", "x")))
    kept.attrs = dict(array.attrs)
    keep = Keep(kept, not_kept if scene == place else _onto(not_kept, place, scene))
    plan = plan_grouped(model, array.attrs["modality"], scene, conditions, sampling, when=when,
                        dn_policy=dn_policy, tags=tags, keep=keep)  # fmt: skip
    writing = WriteOptions(path=path, overwrite=path is not None)  # our own temporary file
    result = run_grouped_into(model, plan, writing, out_grid=place)
    bands = [str(b) for b in array.band.values]
    std = None
    if sampling.samples > 1:
        std = result.sel(band=[f"{b}_std" for b in bands])
    return ModelFill(result.sel(band=bands), std, plan.tags)


def _onto(mask: np.ndarray, grid: GeoBox, target: GeoBox) -> np.ndarray:
    """A pixel mask moved onto another grid (nearest neighbour)."""
    moved = fill_mask.nearest(mask.astype(np.uint8), grid.affine, rasterio_crs(grid), target)
    return moved.astype(bool)


# --- composition --------------------------------------------------------------------------------
def feathered(
    physical: np.ndarray, method: np.ndarray, fill: np.ndarray, feather: int
) -> np.ndarray:
    """The method's values moved, within ``feather`` pixels of a clear pixel, toward the clear
    neighbours (see the module docstring); ``physical`` holds the input (NaN invalid)."""
    out = method.copy()
    if feather == 0:
        return out
    kept = ~fill & np.isfinite(physical).all(0) & np.isfinite(method).all(0)
    if not kept.any():
        return out
    k = torch.from_numpy(kept.astype(np.float32))[None, None]
    diff = torch.from_numpy(np.where(kept, physical - method, 0).astype(np.float32))[:, None]
    size = 2 * feather + 1
    box = torch.nn.functional.avg_pool2d
    num = box(diff, size, stride=1, padding=feather, count_include_pad=False)
    den = box(k, size, stride=1, padding=feather, count_include_pad=False)
    offset = torch.where(den > 0, num / den.clamp_min(1e-12), 0)[:, 0].numpy()
    # chessboard distance to the nearest clear pixel, 1 .. feather (0 beyond)
    distance = np.zeros(kept.shape, dtype=np.float32)
    reached = k
    for step in range(1, feather + 1):
        grown = torch.nn.functional.max_pool2d(reached, 3, stride=1, padding=1)
        ring = ((grown > 0) & (reached == 0))[0, 0].numpy()
        distance[ring] = step
        reached = grown
    weight = np.where(distance > 0, (feather + 1 - distance) / (feather + 1), 0.0)
    touched = fill & (weight > 0)
    out[:, touched] += (weight * offset)[:, touched]
    return out


def _blocks(height: int, halo: int) -> Iterator[tuple[slice, slice]]:
    """Row blocks to compose: the rows read (with the halo) and the rows written inside them."""
    for start in range(0, height, BLOCK_ROWS):
        stop = min(height, start + BLOCK_ROWS)
        read = slice(max(0, start - halo), min(height, stop + halo))
        yield read, slice(start - read.start, stop - read.start)


def compose(
    stored: Stored,
    method: xr.DataArray | np.ndarray,
    fill: np.ndarray,
    *,
    feather: int,
    std: xr.DataArray | np.ndarray | None = None,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Row block by row block: the rows, the stored values with the filled pixels replaced, the
    ``filled`` sidecar and (with ``std``) the filled pixels' standard deviation."""
    domain = get_modality(stored.array.attrs["modality"]).domain
    height = fill.shape[0]
    for read, inner in _blocks(height, feather):
        raw = stored.raw(read)
        physical = stored.physical(raw)
        values = np.asarray(method[:, read], dtype=np.float32)
        mask = fill[read]
        out = np.clip(feathered(physical, values, mask, feather), *domain)
        writable = mask & np.isfinite(out).all(0)
        stored_block = stored.store(raw, out, writable)[:, inner]
        flags = np.where(mask, FILLED, KEPT).astype(np.uint8)
        flags[~writable & (mask | ~np.isfinite(physical).all(0))] = NO_DATA
        spread = None
        if std is not None:
            spread = np.where(writable, np.asarray(std[:, read], np.float32), np.nan)[:, inner]
        yield slice(read.start + inner.start, read.start + inner.stop), stored_block, \
            flags[inner], spread


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


def sidecar_paths(path: Path) -> dict[str, Path]:
    """Where the ``filled`` flags and the standard deviation go beside ``path``."""
    return {
        "filled": path.with_name(f"{path.stem}_filled{path.suffix}"),
        "std": path.with_name(f"{path.stem}_std{path.suffix}"),
    }


def write_fill(
    stored: Stored,
    method: xr.DataArray | np.ndarray,
    fill: np.ndarray,
    path: Path,
    *,
    feather: int,
    tags: Mapping[str, Any],
    overwrite: bool,
    std: xr.DataArray | np.ndarray | None = None,
) -> dict[str, Path]:
    """Write the filled raster, its ``filled`` sidecar and (with ``std``) the standard deviation
    of the filled pixels, each atomically; returns the paths written."""
    paths = {"filled_raster": path, **sidecar_paths(path)}
    if std is None:
        del paths["std"]
    for p in paths.values():
        check_output(p, overwrite=overwrite)
    profile = stored.profile()
    flags = {**profile, "count": 1, "dtype": "uint8", "nodata": NO_DATA}
    spread = {**profile, "count": std.shape[0] if std is not None else 1, "dtype": "float32",
              "nodata": float("nan")}  # fmt: skip
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(_atomic(path, profile, overwrite=overwrite))
        side = stack.enter_context(_atomic(paths["filled"], flags, overwrite=overwrite))
        sd = stack.enter_context(_atomic(paths["std"], spread, overwrite=overwrite)) \
            if std is not None else None
        for rows, block, flag, spread_block in compose(stored, method, fill, feather=feather,
                                                       std=std):  # fmt: skip
            window = Window(0, rows.start, block.shape[-1], rows.stop - rows.start)
            main.write(block, window=window)
            side.write(flag[None], window=window)
            if sd is not None and spread_block is not None:
                sd.write(spread_block, window=window)
        main.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, description in enumerate(stored.descriptions(), start=1):
            if description:
                main.set_band_description(i, description)
        side.update_tags(MEANING="0 kept from the input, 1 filled, 255 no data", **tags)
        if sd is not None:
            sd.update_tags(UNITS=get_modality(stored.array.attrs["modality"]).units, **tags)
    return paths


def in_memory(
    stored: Stored,
    method: xr.DataArray | np.ndarray,
    fill: np.ndarray,
    *,
    feather: int,
    tags: Mapping[str, Any],
    std: xr.DataArray | np.ndarray | None = None,
) -> xr.Dataset:
    """The fill as a Dataset on the input grid: ``filled`` (the stored values), ``filled_mask``
    (the sidecar's flags) and, with ``std``, ``std``."""
    grid = grid_of(stored.array)
    profile = stored.profile()
    blocks = list(compose(stored, method, fill, feather=feather, std=std))
    values = np.concatenate([b for _, b, _, _ in blocks], axis=1)
    flags = np.concatenate([f for _, _, f, _ in blocks], axis=0)
    attrs = {str(k).lower(): str(v) for k, v in tags.items()}
    names = [d or f"band_{i}" for i, d in enumerate(stored.descriptions(), start=1)]
    filled = band_array(values, grid, names, name="filled", attrs=attrs,
                        nodata=profile["nodata"])  # fmt: skip
    meaning = {"meaning": "0 kept from the input, 1 filled, 255 no data"}
    flagged = band_array(flags[None], grid, ["filled"], name="filled_mask", attrs=meaning,
                         nodata=NO_DATA)  # fmt: skip
    out = {"filled": filled, "filled_mask": flagged.isel(band=0, drop=True)}
    if std is not None:
        spread = np.concatenate([s for _, _, _, s in blocks], axis=1)
        names = [f"{b}_std" for b in stored.array.band.values]
        out["std"] = band_array(spread, grid, names, name="std", attrs={})
    return xr.Dataset(out, attrs=attrs)


def read_fill(paths: Mapping[str, Path]) -> xr.Dataset:
    """A written fill read back lazily, as :func:`in_memory` returns it."""
    import rioxarray

    chunks = {"band": -1, "y": BLOCK_ROWS * 4, "x": BLOCK_ROWS * 4}
    opened = {key: rioxarray.open_rasterio(path, chunks=chunks, mask_and_scale=False)
              for key, path in paths.items()}  # fmt: skip
    out = {
        "filled": opened["filled_raster"].rename("filled"),
        "filled_mask": opened["filled"].isel(band=0, drop=True).rename("filled_mask"),
    }
    if "std" in opened:
        out["std"] = opened["std"].rename("std")
    attrs = {str(k).lower(): v for k, v in opened["filled_raster"].attrs.items()}
    return xr.Dataset(out, attrs=attrs)


def run(
    stored: Stored,
    found: FillMask,
    request: FillOptions,
    conditions: Mapping[str, xr.DataArray],
    sampling: Any,
    reading: Any,
    writing: Any,
    *,
    model: Any = None,
    model_name: str = "",
    tags: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The values for the masked pixels by ``request.method``, composed with the input, into
    ``writing.path`` (and read back) or memory."""
    array, std, tags = stored.array, None, dict(tags or {})
    tmp = None
    try:
        if not check_fill(found, array):
            values: xr.DataArray | np.ndarray = array
        elif request.method == "model":
            if writing.path is not None:
                tmp = temporary_name(writing.path, ".model.tif")
            made = model_values(model, array, conditions, found.fill, sampling,
                                when=reading.date, dn_policy=reading.s2_dn, path=tmp,
                                tags={"MODEL": model_name})  # fmt: skip
            values, std = made.mean, made.std
            tags = {**made.tags, **tags}
        elif request.method == "interpolate":
            values = interpolated(array, found.fill)
        else:
            values = ridge_filled(array, conditions, found.fill)
        if writing.path is None:
            return in_memory(stored, values, found.fill, feather=request.feather, tags=tags,
                             std=std)  # fmt: skip
        paths = write_fill(stored, values, found.fill, writing.path, feather=request.feather,
                           tags=tags, overwrite=writing.overwrite, std=std)  # fmt: skip
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return read_fill(paths)


def check_fill(mask: FillMask, array: xr.DataArray) -> bool:
    """Whether there is anything to fill: ``False`` (with a warning) when nothing is masked;
    refused with one line when nothing clear is left to keep."""
    source = array.attrs.get("source", "the input")
    if not mask.fill.any():
        warn(f"{source}: the mask ({mask.source}) marks no pixel; nothing to fill, the output "
             "is the input unchanged", GeoCopGenWarning)  # fmt: skip
        return False
    if mask.fill.all() or (mask.fill | invalid_pixels(array)).all():
        raise InputError(
            f"{source}: every pixel is to be filled ({mask.source}), so nothing clear is left to "
            "keep; translate from the other modalities instead (geocopgen translate ... --to "
            f"{array.attrs['modality']})"
        )
    return True


__all__ = [
    "FEATHER_PX",
    "METHODS",
    "FillOptions",
    "Stored",
    "check_fill",
    "compose",
    "feathered",
    "in_memory",
    "interpolated",
    "read_fill",
    "resolve_mask",
    "ridge_filled",
    "run",
    "sidecar_paths",
    "write_fill",
]
