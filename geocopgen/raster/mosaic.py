"""Streaming mosaic writer: per-chip outputs blended into one tiled, compressed GeoTIFF (or COG).

``MosaicWriter(path, grid, bands, chips=chip_grid)`` receives chip outputs with ``add(chip,
array)`` in any order. Each chip is weighted by the chip grid's raised-cosine blend weights and
accumulated in float64 into the *output tiles* it touches; a tile is normalised (sum / weight),
written and freed as soon as the last chip touching it has arrived (the writer counts them in
advance, and ``skip(chip)`` accounts for all-nodata chips).

Memory does not grow with the raster. The GeoTIFF tile size is the chip stride (224 px for the
default 256 px chips with 32 px overlap), so chips and tiles line up and, in the chip grid's
order, a tile is complete right after "its" chip; what stays partial is the ``overlap`` rows
under the current chip row (partial tiles store only the rows chips have touched). Beyond a
memory budget (32 MB) the least recently touched partial tiles are parked in an unnamed scratch
file beside the output (OS page cache, not process memory) and read back when needed.

Blending rule, per band and pixel: ``value = sum(w_i * x_i) / sum(w_i)`` over the chips covering
it, summed in float64 and rounded once to float32, so identical inputs blend back to themselves
exactly. NaN propagates: a band value is nodata if any covering chip returned NaN there
(``apply_chipwise`` returns NaN where the input was invalid, so every chip agrees), or if no chip
covered it (all-nodata chips are skipped).

The file is written to a temporary name in the output's folder and renamed into place by
``close()`` only when complete (after optional aggregation to another grid, e.g. a DEM at its
native 30 m with ``average``, and optional COG conversion); an exception, or Ctrl-C, removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window

from geocopgen._version import __version__
from geocopgen.errors import GeoCopGenError, GridError, NoValidDataError, OutputError
from geocopgen.modalities import Modality, get_modality, reading_tags
from geocopgen.outputs import (
    disk_full,
    move_into_place,
    prepare_output,
    remove_stale,
    temporary_name,
    write_failure,
)
from geocopgen.raster.categories import Categories
from geocopgen.raster.chips import Chip, ChipData, ChipGrid, iter_chips
from geocopgen.raster.grid import GeoBox, describe, grid_of, grid_profile, rasterio_crs

log = logging.getLogger(__name__)

#: GDAL block cache while streaming (MB): big enough for a tile row of reads, small enough that
#: memory does not grow with the raster.
GDAL_CACHE_MB = 64
#: Partial output tiles kept in memory (bytes); beyond it the least recently touched are parked
#: in a scratch file, so memory does not grow with the raster's width either.
DEFAULT_MEMORY_BUDGET = 32 * 2**20
_FALLBACK_BLOCK = 256


class _TileAccumulator:
    """float64 weighted sums for the rows of one output tile that chips have touched so far.

    NaN propagates through ``total``: a band value any chip returned as NaN stays NaN.
    """

    __slots__ = ("r0", "r1", "total", "weight")

    def __init__(self, bands: int, r0: int, r1: int, width: int):
        self.r0, self.r1 = r0, r1
        self.total = np.zeros((bands, r1 - r0, width), dtype=np.float64)
        self.weight = np.zeros((r1 - r0, width), dtype=np.float64)

    def cover(self, r0: int, r1: int) -> int:
        """Grow (never shrink) the stored row range to include ``[r0, r1)``; bytes added."""
        if r0 >= self.r0 and r1 <= self.r1:
            return 0
        before = self.nbytes
        n0, n1 = min(r0, self.r0), max(r1, self.r1)
        bands, _, width = self.total.shape
        total = np.zeros((bands, n1 - n0, width), dtype=np.float64)
        weight = np.zeros((n1 - n0, width), dtype=np.float64)
        rows = slice(self.r0 - n0, self.r1 - n0)
        total[:, rows], weight[rows] = self.total, self.weight
        self.total, self.weight, self.r0, self.r1 = total, weight, n0, n1
        return self.nbytes - before

    @property
    def nbytes(self) -> int:
        return self.total.nbytes + self.weight.nbytes


class _Scratch:
    """Parked accumulators in an unnamed temporary file next to the output.

    Their bytes then live in the OS page cache, not in the process, which is what keeps the
    writer's memory flat on wide rasters; the file vanishes when closed, even after a crash.
    """

    def __init__(self, folder: Path):
        # closed by close() (the writer owns its lifetime, across many calls)
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".geocopgen-scratch-")  # noqa: SIM115
        self._end = 0
        self._free: dict[int, list[int]] = {}
        self._parked: dict[tuple[int, int], tuple[int, int, int, tuple[int, ...]]] = {}

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._parked

    def park(self, key: tuple[int, int], acc: _TileAccumulator) -> None:
        data = np.concatenate([acc.total.ravel(), acc.weight.ravel()])
        size = data.nbytes
        slots = self._free.get(size)
        offset = slots.pop() if slots else self._end
        if offset == self._end:
            self._end += size
        os.pwrite(self._file.fileno(), memoryview(data).cast("B"), offset)
        self._parked[key] = (offset, acc.r0, acc.r1, acc.total.shape)

    def unpark(self, key: tuple[int, int]) -> _TileAccumulator:
        offset, r0, r1, shape = self._parked.pop(key)
        bands, rows, width = shape
        data = np.empty(bands * rows * width + rows * width, dtype=np.float64)
        os.preadv(self._file.fileno(), [memoryview(data).cast("B")], offset)
        self._free.setdefault(data.nbytes, []).append(offset)
        acc = _TileAccumulator.__new__(_TileAccumulator)
        acc.r0, acc.r1 = r0, r1
        acc.total = data[: bands * rows * width].reshape(shape)
        acc.weight = data[bands * rows * width :].reshape(rows, width)
        return acc

    def close(self) -> None:
        self._file.close()


def cog_copy(
    path: Path, out: Path, *, compress: str, categorical: bool, predictor: int | None = None
) -> None:
    """``path`` copied to ``out`` as a Cloud Optimized GeoTIFF: 512 px blocks, overviews by
    ``mode`` for class codes and by ``average`` otherwise, ``compress`` (and ``predictor``)."""
    options: dict[str, Any] = {
        "driver": "COG",
        "compress": compress,
        "blocksize": 512,
        "overview_resampling": "mode" if categorical else "average",
        "bigtiff": "IF_SAFER",
    }
    if predictor is not None:
        options["predictor"] = predictor
    rasterio.shutil.copy(path, out, **options)


class MosaicWriter:
    """Blend chip outputs into a GeoTIFF on ``grid``, streaming tile by tile.

    Use as a context manager: leaving the block normally calls :meth:`close` (the file appears),
    leaving it with an exception calls :meth:`abort` (no file appears). ``path`` is checked once,
    before any work, by whoever starts the run (:func:`geocopgen.outputs.prepare_output`, e.g.
    through ``WriteOptions.prepare``): the writer only writes a temporary file beside it and
    renames it into place, refusing a file that appeared meanwhile unless ``overwrite``.
    """

    def __init__(
        self,
        path: str | Path | None,
        grid: GeoBox,
        bands: Sequence[str],
        *,
        chips: ChipGrid | None = None,
        modality: str | Modality | None = None,
        units: str | Sequence[str] | None = None,
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        out_grid: GeoBox | None = None,
        cog: bool = False,
        compress: str = "deflate",
        block_size: int | None = None,
        overwrite: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        categories: Categories | None = None,
        out_resampling: Resampling | None = None,
    ):
        self.path = Path(path) if path is not None else None
        self.grid = grid
        self.bands = list(bands)
        self.chips = chips
        self.modality = get_modality(modality) if modality is not None else None
        self.out_grid = out_grid or grid
        #: how the finished mosaic goes onto ``out_grid``: average (a coarser grid, the default);
        #: bilinear to a finer one; class codes by nearest
        self.out_resampling = out_resampling or (
            Resampling.nearest if categories is not None else Resampling.average
        )
        self.cog = cog
        self.compress = compress
        #: a categorical output blends one score per class and writes the argmax code (uint8)
        self.categories = categories
        self.accumulated = len(categories.codes) if categories is not None else len(self.bands)
        self.block = block_size or _block_for(chips)
        self.tiles_shape = (-(-grid.height // self.block), -(-grid.width // self.block))
        self._acc: OrderedDict[tuple[int, int], _TileAccumulator] = OrderedDict()  # LRU order
        self._live_bytes = 0
        self._scratch: _Scratch | None = None
        self.memory_budget = memory_budget
        self._remaining = self._count_chips_per_tile() if chips is not None else None
        self._done = np.zeros(self.tiles_shape, dtype=bool)
        self.peak_accumulator_bytes = 0
        self.chips_added = 0
        self.chips_skipped = 0
        self.tiles_parked = 0
        self._closed = False
        if self.out_grid.crs != grid.crs:
            raise GridError("out_grid must be in the same CRS as the mosaic grid")

        self._temps: list[Path] = []
        units_list = _per_band(units if units is not None else _units(self.modality), self.bands)
        self.result: np.ndarray | None = None
        if self.path is None:  # in memory: the same mosaic, finished tiles go into an array
            self.memory_budget = np.inf  # nothing to park them in; the result is in memory anyway
            self._units, self._descriptions, self._tags = units_list, descriptions, dict(tags or {})
            self._dst = _ArrayTarget(len(self.bands), grid.height, grid.width, self._dtype)
            return
        self.overwrite = overwrite
        remove_stale(self.path)
        self._tmp = self._tmp_name(".tmp.tif")
        self._dst = self._open(self._tmp, grid, units_list, descriptions, tags or {})

    # --- setup ---------------------------------------------------------------------------------
    def _tmp_name(self, suffix: str) -> Path:
        name = temporary_name(self.path, suffix)
        self._temps.append(name)
        return name

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Disk trouble while writing (a full disk, an I/O error) becomes one
        :class:`OutputError` naming the output, after the temporary files are removed."""
        try:
            yield
        except GeoCopGenError:
            raise
        except (RasterioError, OSError) as exc:
            if self.path is None:  # in memory: nothing of ours on disk to blame
                raise
            raise self._failed(exc) from None

    def _failed(self, why: BaseException | str) -> OutputError:
        """Abort, and say why (a full disk is checked before the temporaries free their room)."""
        full = disk_full(self.path.parent)
        self.abort()
        return write_failure(self.path, why, full=full)

    def _profile(self, grid: GeoBox) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "dtype": self._dtype,
            "count": len(self.bands),
            "nodata": np.nan if self.categories is None else self.categories.nodata,
            "tiled": True,
            "blockxsize": self.block,
            "blockysize": self.block,
            "compress": self.compress,
            "interleave": "pixel" if len(self.bands) <= 4 else "band",
            "bigtiff": "IF_SAFER",
            **grid_profile(grid),
        }
        if self.compress.lower() in ("deflate", "lzw", "zstd"):
            profile["predictor"] = self._predictor
        return profile

    def _open(
        self,
        path: Path,
        grid: GeoBox,
        units: Sequence[str],
        descriptions: Sequence[str] | None,
        tags: Mapping[str, Any],
    ) -> Any:
        try:
            dst = rasterio.open(path, "w", **self._profile(grid))
        except (RasterioError, OSError) as exc:
            path.unlink(missing_ok=True)
            raise write_failure(self.path, exc) from None
        self._write_metadata(dst, units, descriptions, tags)
        return dst

    def _write_metadata(
        self,
        dst: Any,
        units: Sequence[str],
        descriptions: Sequence[str] | None,
        tags: Mapping[str, Any],
    ) -> None:
        """Band names, units and provenance: what QGIS shows and ``open_raster`` reads back."""
        self._units, self._descriptions, self._tags = units, descriptions, dict(tags)
        base: dict[str, Any] = {"ENCODING": "physical", "GEOCOPGEN_VERSION": __version__}
        if self.modality is not None:
            base["MODALITY"] = self.modality.name
            base["UNITS"] = self.modality.units
        dst.update_tags(**base, **{str(k).upper(): str(v) for k, v in tags.items()})
        if self.categories is not None:
            dst.update_tags(**self.categories.tags())
            dst.write_colormap(1, self.categories.colormap())
        band_desc = {b.name: b.description for b in self.modality.bands} if self.modality else {}
        for i, name in enumerate(self.bands, start=1):
            dst.set_band_description(i, name)
            dst.set_band_unit(i, units[i - 1])
            extra = descriptions[i - 1] if descriptions else band_desc.get(name, "")
            if extra:
                dst.update_tags(i, DESCRIPTION=extra)

    @property
    def _resampled_to(self) -> str:
        """The ``RESAMPLED_TO`` tag: the output grid and how the mosaic was put on it."""
        return f"{describe(self.out_grid)} with {self.out_resampling.name}"

    @property
    def _nodata(self) -> float:
        return np.nan if self.categories is None else float(self.categories.nodata)

    @property
    def _dtype(self) -> str:
        return "float32" if self.categories is None else "uint8"

    @property
    def _predictor(self) -> int:
        """Floating-point prediction for float32, horizontal differencing for class codes."""
        return 3 if self.categories is None else 2

    def _count_chips_per_tile(self) -> np.ndarray:
        counts = np.zeros(self.tiles_shape, dtype=np.int32)
        for chip in self.chips:  # type: ignore[union-attr]
            ti, tj = self._tile_span(chip.window)
            counts[ti, tj] += 1
        return counts

    def _tile_span(self, window: Window) -> tuple[slice, slice]:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        b = self.block
        return slice(r0 // b, (r1 - 1) // b + 1), slice(c0 // b, (c1 - 1) // b + 1)

    # --- streaming -----------------------------------------------------------------------------
    def add(self, chip: Chip, array: np.ndarray) -> None:
        """Blend one chip output ``(band, h, w)`` (window- or chip-sized) into the mosaic."""
        self._check_open()
        h, w = int(chip.window.height), int(chip.window.width)
        array = np.asarray(array)[..., :h, :w]
        if array.shape != (self.accumulated, h, w):
            raise GridError(
                f"chip ({chip.row}, {chip.col}) output has shape {array.shape}; the mosaic needs "
                f"({self.accumulated}, {h}, {w}) (bands, rows, cols)"
            )
        weights = self.chips.weights(chip) if self.chips is not None else np.ones((h, w))
        contribution = array.astype(np.float64) * weights
        r0, c0 = int(chip.window.row_off), int(chip.window.col_off)
        rows, cols = self._tile_span(chip.window)
        b = self.block
        touched = []
        for ti in range(rows.start, rows.stop):
            tr0 = max(r0, ti * b)
            tr1 = min(r0 + h, (ti + 1) * b, self.grid.height)
            for tj in range(cols.start, cols.stop):
                tc0 = max(c0, tj * b)
                tc1 = min(c0 + w, (tj + 1) * b, self.grid.width)
                acc = self._accumulator(ti, tj, tr0 - ti * b, tr1 - ti * b)
                local = (slice(tr0 - ti * b - acc.r0, tr1 - ti * b - acc.r0),
                         slice(tc0 - tj * b, tc1 - tj * b))  # fmt: skip
                src = (slice(tr0 - r0, tr1 - r0), slice(tc0 - c0, tc1 - c0))
                acc.total[(slice(None), *local)] += contribution[(slice(None), *src)]
                acc.weight[local] += weights[src]
                touched.append((ti, tj))
        self.chips_added += 1
        self.peak_accumulator_bytes = max(self.peak_accumulator_bytes, self._live_bytes)
        with self._writing():
            self._chip_done(rows, cols)
            self._keep_within_budget(set(touched))

    def skip(self, chip: Chip) -> None:
        """Account for a chip that contributes nothing (all nodata), so its tiles can finish."""
        self._check_open()
        self.chips_skipped += 1
        with self._writing():
            self._chip_done(*self._tile_span(chip.window))

    def _accumulator(self, ti: int, tj: int, r0: int, r1: int) -> _TileAccumulator:
        key = (ti, tj)
        acc = self._acc.get(key)
        if acc is None and self._scratch is not None and key in self._scratch:
            acc = self._acc[key] = self._scratch.unpark(key)
            self._live_bytes += acc.nbytes
        if acc is None:
            width = min(self.block, self.grid.width - tj * self.block)
            acc = self._acc[key] = _TileAccumulator(self.accumulated, r0, r1, width)
            self._live_bytes += acc.nbytes
        else:
            self._live_bytes += acc.cover(r0, r1)
            self._acc.move_to_end(key)
        return acc

    def _keep_within_budget(self, keep: set[tuple[int, int]]) -> None:
        """Park least-recently-touched partial tiles in the scratch file while over budget."""
        while self._live_bytes > self.memory_budget:
            key = next((k for k in self._acc if k not in keep), None)
            if key is None:
                return
            if self._scratch is None:
                self._scratch = _Scratch(self.path.parent)
            acc = self._acc.pop(key)
            self._live_bytes -= acc.nbytes
            self._scratch.park(key, acc)
            self.tiles_parked += 1

    def _chip_done(self, rows: slice, cols: slice) -> None:
        if self._remaining is None:
            return
        self._remaining[rows, cols] -= 1
        for ti in range(rows.start, rows.stop):
            for tj in range(cols.start, cols.stop):
                if self._remaining[ti, tj] == 0 and not self._done[ti, tj]:
                    self._flush(ti, tj)

    def _flush(self, ti: int, tj: int) -> None:
        b = self.block
        h = min(b, self.grid.height - ti * b)
        w = min(b, self.grid.width - tj * b)
        out = np.full((self.accumulated, h, w), np.nan, dtype=np.float32)
        acc = self._acc.pop((ti, tj), None)
        if acc is None and self._scratch is not None and (ti, tj) in self._scratch:
            acc = self._scratch.unpark((ti, tj))
        elif acc is not None:
            self._live_bytes -= acc.nbytes
        if acc is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                blended = acc.total / acc.weight
            blended[:, acc.weight == 0] = np.nan
            out[:, acc.r0 : acc.r1] = blended.astype(np.float32)
        if self.categories is not None:
            out = self.categories.finish(out)
        self._dst.write(out, window=Window(tj * b, ti * b, w, h))
        self._done[ti, tj] = True

    @property
    def tags(self) -> dict[str, str]:
        """The tags the output carries (upper-case keys), provenance and added ones."""
        return {str(k).upper(): str(v) for k, v in self._tags.items()}

    def update_tags(self, **tags: Any) -> None:
        """Tags only known once the work is done (a count, say), added before :meth:`close`;
        they survive aggregation."""
        self._check_open()
        upper = {str(k).upper(): str(v) for k, v in tags.items()}
        self._tags.update(upper)
        if self.path is not None:
            self._dst.update_tags(**upper)

    # --- finishing -----------------------------------------------------------------------------
    def close(self) -> Path | None:
        """Finish every tile, aggregate/convert if asked, and rename into place (in memory: keep
        the finished mosaic in :attr:`result`)."""
        if self._closed:
            return self.path
        if self.path is None:
            return self._close_in_memory()
        try:
            with self._writing():
                self._flush_all()
                self._dst.close()
                self._close_scratch()
                final = self._tmp
                if self.out_grid != self.grid:
                    final = self._aggregate(final)
                if self.cog:
                    final = self._to_cog(final)
                _verify(final)
                os.chmod(final, 0o666 & ~_umask())  # mkstemp made it private; the usual mode
                move_into_place(final, self.path, overwrite=self.overwrite)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        log.info("wrote %s", self.path)
        return self.path

    def _flush_all(self) -> None:
        for ti, tj in zip(*np.nonzero(~self._done), strict=True):
            self._flush(int(ti), int(tj))

    def _close_in_memory(self) -> None:
        self._flush_all()
        values = self._dst.values
        if self.out_grid != self.grid:
            self._tags["RESAMPLED_TO"] = self._resampled_to
            values = _aggregate_array(
                values, self.grid, self.out_grid, self.out_resampling, self._nodata
            )
        self.result = values
        self._closed = True

    def abort(self) -> None:
        """Drop everything: close and delete the temporary file(s); no output appears."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._dst.close()
        self._close_scratch()
        for tmp in self._temps:
            tmp.unlink(missing_ok=True)
        self._acc.clear()

    def _close_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None

    def _aggregate(self, path: Path) -> Path:
        """Resample the finished mosaic onto ``out_grid``, window by window."""
        out = self._tmp_name(".tmp.agg.tif")
        self._tags["RESAMPLED_TO"] = self._resampled_to
        with rasterio.open(path) as src:
            dst = self._open(out, self.out_grid, self._units, self._descriptions, self._tags)
            with (
                dst,
                WarpedVRT(
                    src,
                    **grid_profile(self.out_grid),
                    resampling=self.out_resampling,
                    src_nodata=self._nodata,
                    nodata=self._nodata,
                ) as vrt,
            ):
                for _, window in dst.block_windows(1):
                    dst.write(vrt.read(window=window), window=window)
        path.unlink()
        return out

    def _to_cog(self, path: Path) -> Path:
        out = self._tmp_name(".tmp.cog.tif")
        predicted = self.compress.lower() in ("deflate", "lzw", "zstd")
        cog_copy(path, out, compress=self.compress, categorical=self.categories is not None,
                 predictor=self._predictor if predicted else None)  # fmt: skip
        path.unlink()
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise OutputError(f"the mosaic writer for {self.path} is already closed")

    def __enter__(self) -> MosaicWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _ArrayTarget:
    """Where an in-memory mosaic's finished tiles go: one float32 array, NaN until written."""

    def __init__(self, bands: int, height: int, width: int, dtype: str = "float32") -> None:
        fill = np.nan if np.dtype(dtype).kind == "f" else 0
        self.values = np.full((bands, height, width), fill, dtype=dtype)

    def write(self, tile: np.ndarray, window: Window) -> None:
        r0, c0 = int(window.row_off), int(window.col_off)
        self.values[:, r0 : r0 + tile.shape[1], c0 : c0 + tile.shape[2]] = tile

    def close(self) -> None:
        """Nothing to release."""


def _aggregate_array(
    values: np.ndarray,
    grid: GeoBox,
    out_grid: GeoBox,
    resampling: Resampling = Resampling.average,
    nodata: float = np.nan,
) -> np.ndarray:
    """``values`` on ``grid`` resampled onto ``out_grid`` (GDAL's warper, as for files)."""
    shape = (values.shape[0], out_grid.height, out_grid.width)
    out = np.full(shape, nodata, dtype=values.dtype)
    reproject(
        values,
        out,
        src_transform=grid.transform,
        src_crs=rasterio_crs(grid),
        dst_transform=out_grid.transform,
        dst_crs=rasterio_crs(out_grid),
        resampling=resampling,
        src_nodata=nodata,
        dst_nodata=nodata,
    )
    return out


def _verify(path: Path) -> None:
    """Reopen a finished file and read its last tile: on a full disk GDAL may fail to write
    tiles and the header yet close the file without an error, and a broken file must not be
    renamed into place (the read raises instead)."""
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        r0, c0 = (src.height - 1) // bh * bh, (src.width - 1) // bw * bw
        src.read(window=Window(c0, r0, src.width - c0, src.height - r0))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _block_for(chips: ChipGrid | None) -> int:
    """Tile size = chip stride when it is a valid GeoTIFF tile size, so tiles finish early."""
    if chips is not None and chips.stride % 16 == 0 and 16 <= chips.stride <= 2048:
        return chips.stride
    return _FALLBACK_BLOCK


def _units(modality: Modality | None) -> str:
    if modality is None:
        return ""
    if modality.categorical:
        return "class"
    return {"dem": "m", "s1rtc": "dB"}.get(modality.name, "reflectance")


def _per_band(units: str | Sequence[str], bands: Sequence[str]) -> list[str]:
    if isinstance(units, str):
        return [units] * len(bands)
    if len(units) != len(bands):
        raise GridError(f"{len(units)} units for {len(bands)} bands")
    return list(units)


# --- running an operation chip by chip ------------------------------------------------------
ChipFn = Callable[[np.ndarray, ChipData], np.ndarray]


def identity(data: np.ndarray, chip: ChipData) -> np.ndarray:
    """The identity chip operation (for round trips)."""
    return data


def apply_chipwise(
    array: xr.DataArray,
    fn: ChipFn,
    out_path: str | Path,
    *,
    bands: Sequence[str] | None = None,
    modality: str | Modality | None = None,
    chip_size: int = 256,
    overlap: int = 32,
    out_grid: GeoBox | None = None,
    cog: bool = False,
    compress: str = "deflate",
    tags: Mapping[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Run ``fn`` on every chip of ``array`` and stream the blended result to ``out_path``.

    ``fn(data, chip)`` gets the chip's ``(band, size, size)`` float32 pixels (reflection-padded
    when the raster is smaller than a chip; ``chip.valid`` marks pixels with every band finite) and
    returns ``(out_band, size, size)``. Outputs are set to NaN where the input pixel has no valid
    band at all; where only some input bands are NaN, ``fn`` decides (identity keeps them NaN per
    band, so a round trip is exact), then chips are blended. All-nodata chips are skipped; if every
    chip is, :class:`NoValidDataError` is raised and no file is written. ``out_grid`` (e.g.
    ``at_resolution(grid, 30)``) aggregates the result with ``average``.
    """
    from tqdm.auto import tqdm

    source = str(array.attrs.get("source", "input"))
    grid = grid_of(array)
    prepare_output(out_path, overwrite=overwrite, inputs=[source], raster=True)
    name = modality or array.attrs.get("modality")
    chips = ChipGrid.from_grid(grid, chip_size=chip_size, overlap=overlap)
    out_bands = list(bands) if bands is not None else [str(b) for b in array["band"].values]
    provenance = {
        "SOURCE": source,
        "CHIP_SIZE": chip_size,
        "OVERLAP": overlap,
        "BLEND": "raised-cosine",
        "OPERATION": getattr(fn, "__name__", type(fn).__name__),
        **(tags or {}),
    }
    for key, value in reading_tags(array.attrs, "INPUT").items():
        provenance.setdefault(key, value)
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20),
        MosaicWriter(
            out_path,
            grid,
            out_bands,
            chips=chips,
            modality=name,
            tags=provenance,
            out_grid=out_grid,
            cog=cog,
            compress=compress,
            overwrite=overwrite,
        ) as writer,
    ):
        bar = tqdm(total=len(chips), desc="chips", unit="chip", disable=not progress)
        with bar:
            for chip in iter_chips(array, chips):
                bar.update(1)
                if chip.empty:
                    writer.skip(chip.chip)
                    continue
                out = np.asarray(fn(chip.data, chip), dtype=np.float32)
                out = np.where(chip.observed, out, np.nan)
                writer.add(chip.chip, chip.crop(out))
        if writer.chips_added == 0:
            raise NoValidDataError(
                f"{source}: every pixel is nodata, so there is nothing to process. Check the "
                "input's nodata value (API nodata=, CLI --nodata) or pick another file."
            )
    return Path(out_path)
