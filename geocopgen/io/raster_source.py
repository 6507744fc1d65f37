"""RasterSource: the lazy, windowed reader behind every file-backed ModalityArray.

One object knows, for each band, which file (and band index) holds it and whether it must be
resampled onto the target grid; reading a window does one GDAL read per file (through a
``WarpedVRT`` with an explicit resampling for bands on another grid) and decodes the raw values to
physical units with the input's :class:`~geocopgen.io.decoding.Decoding`.

It is wrapped in a dask array with ``dask.array.from_array``; dask fuses a slice of that array into
the getter, so ``array[:, rows, cols].compute()`` reads exactly that window instead of whole
chunks. That is what makes overlapping chip reads cheap.

Where a band's bytes live is the *opener*'s business: :func:`open_dataset` for paths GDAL opens
(the default), :class:`MemoryBands` for GeoTIFF bytes held in memory (a Major TOM parquet row
group), or any picklable ``opener(path) -> dataset`` a source supplies (e.g. one that checks each
band file against the grid the source declared). Every opener feeds the same window reads,
resampling and decoding, so a band reads the same whatever holds it.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geocopgen.errors import UnreadableInputError
from geocopgen.io.decoding import Decoding
from geocopgen.io.resample import bilinear_window
from geocopgen.raster.grid import GeoBox, grid_profile, make_grid, rasterio_crs


@dataclass(frozen=True)
class BandRef:
    """Where one band lives: file, 1-based band index, and how to resample it (None: on grid)."""

    name: str
    path: str
    index: int
    resampling: Resampling | None = None
    src_nodata: float | None = None
    dst_nodata: float | None = None


#: Opens the band named by a :class:`BandRef` ``path`` as a rasterio dataset (must pickle).
Opener = Callable[[str], Any]

#: A URL (``https://``, ``s3://``...) or a GDAL virtual path (``/vsicurl/``, ``/vsis3/``...).
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.\-]*://|/vsi[a-z0-9_]+/)", re.IGNORECASE)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL or GDAL virtual path, which rasterio opens as it is (a COG on
    an object store is read by range requests) and ``pathlib`` would mangle (``https:/``)."""
    return isinstance(path, str) and bool(_REMOTE.match(path))


def name_path(location: str) -> PurePosixPath:
    """The path part of a URL or GDAL virtual path (no scheme, host or query): the file and
    folder names that carry modality words and product ids."""
    rest = re.sub(r"^(?:/vsi[a-z0-9_]+/)+", "", location, flags=re.IGNORECASE)
    return PurePosixPath(urlsplit(rest).path if "://" in rest else "/" + rest)


def open_dataset(path: str) -> rasterio.DatasetReader:
    """``rasterio.open`` with a named error that says what to do."""
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise UnreadableInputError(
            f"{path}: cannot open it as a raster ({exc}). Check the path, and that the file is a "
            "complete GeoTIFF (or another format GDAL reads)."
        ) from None


def probe(ds: Any, path: str) -> None:
    """Read the last pixel of every band: a truncated file fails here, before any work starts."""
    try:
        ds.read(window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except Exception as exc:  # rasterio raises several types for corrupt data
        raise UnreadableInputError(
            f"{path}: the file is truncated or corrupt (reading its last block failed: {exc}). "
            "Re-create or re-download it."
        ) from None


class MemoryBands:
    """An opener for band files held as GeoTIFF bytes (e.g. one Major TOM parquet row group).

    ``fetch()`` returns ``{key: geotiff_bytes}`` with the keys the :class:`BandRef` paths use. It
    runs once per process, on first use, so a lazy array built on it costs nothing until read.
    Each band's bytes then live in a rasterio ``MemoryFile`` (a ``/vsimem/`` file) for as long as
    this object lives, that is as long as the lazy array reading through it; they are released
    when it is garbage-collected, or by :meth:`close`. ``check(dataset, key)``, if given, sees
    every band once, in ``fetch`` order, before any is handed out: a bad band fails the same
    way whichever thread reads first. Pickling (dask.distributed) ships only ``fetch`` and
    ``check``; a worker fetches its own copy.
    """

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, bytes]],
        check: Callable[[Any, str], None] | None = None,
    ) -> None:
        self.fetch = fetch
        self.check = check
        self._init_cache()

    def _init_cache(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, MemoryFile] = {}
        self._fetched = False
        self._finalizer = weakref.finalize(self, _close_all, self._files)

    def __call__(self, key: str) -> rasterio.DatasetReader:
        files = self._memory_files()
        if key not in files:
            raise UnreadableInputError(
                f"{key}: not among the bands fetched ({', '.join(files) or 'none'}); the "
                "product is incomplete."
            )
        return _open_memory(files[key], key)

    def _memory_files(self) -> dict[str, MemoryFile]:
        with self._lock:
            if not self._fetched:
                try:
                    for key, data in self.fetch().items():
                        self._files[key] = MemoryFile(bytes(data))
                        if self.check is not None:
                            with _open_memory(self._files[key], key) as ds:
                                self.check(ds, key)
                except BaseException:
                    _close_all(self._files)
                    raise
                self._fetched = True
            return self._files

    def close(self) -> None:
        """Release the in-memory files now (the next read fetches again)."""
        with self._lock:
            _close_all(self._files)
            self._fetched = False

    def __getstate__(self) -> dict:
        return {"fetch": self.fetch, "check": self.check}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_cache()

    def __dask_tokenize__(self) -> tuple:
        from dask.base import tokenize

        return (type(self).__name__, tokenize(self.fetch), tokenize(self.check))


def _open_memory(memfile: MemoryFile, key: str) -> rasterio.DatasetReader:
    try:
        return memfile.open()
    except RasterioError as exc:
        raise UnreadableInputError(
            f"{key}: the bytes are not a raster GDAL reads ({exc}); the file is corrupt. "
            "Re-create or re-download it."
        ) from None


def _close_all(files: dict[str, MemoryFile]) -> None:
    """Close (unlink) in-memory files; datasets still open on them keep their own reference."""
    for memfile in files.values():
        memfile.close()
    files.clear()


class RasterSource:
    """Bands of one input on one grid, read window by window in physical units (float32)."""

    def __init__(
        self,
        bands: Sequence[BandRef],
        grid: GeoBox,
        decoding: Decoding,
        source: str,
        opener: Opener | None = None,
        *,
        spare: Mapping[str, Any] | None = None,
        inside: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.bands = tuple(bands)
        self.grid = grid
        self.decoding = decoding
        self.source = source
        self.opener = opener or open_dataset
        #: (rows, cols) of ``grid`` wholly inside the input's raster; the others read as nodata
        #: (None: every pixel)
        self.inside = inside
        self._local = threading.local()
        # datasets the planner already opened: the first thread to need a file takes its
        # handle, so a file planned and then read is opened once (never pickled or shared)
        self._spare = dict(spare or {})
        self._spare_lock = threading.Lock()

    # --- the array protocol dask needs ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.bands), self.grid.height, self.grid.width)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("float32")

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        # An integer (dask passes one for ``sel(band="B05")``) is a one-wide slice, squeezed
        # after the read, so it reads that band's window and nothing else.
        ints = tuple(i for i, k in enumerate(key) if isinstance(k, (int, np.integer)))
        key = tuple(
            _one_wide(k, n) if i in ints else k
            for i, (k, n) in enumerate(zip(key, self.shape, strict=True))
        )
        if not all(isinstance(k, slice) for k in key):
            return np.asarray(self[:, :, :])[key]  # pragma: no cover - dask only passes slices
        b, r, c = (range(*k.indices(n)) for k, n in zip(key, self.shape, strict=True))
        if len(b) == 0 or len(r) == 0 or len(c) == 0:
            out = np.empty((len(b), len(r), len(c)), dtype=np.float32)
        else:
            window = Window(c.start, r.start, c.stop - c.start, r.stop - r.start)
            out = self.read(window, list(b))
            if r.step != 1 or c.step != 1:
                out = out[:, :: r.step, :: c.step]
        return out.squeeze(axis=ints) if ints else out

    def __dask_tokenize__(self) -> tuple:
        inside = None if self.inside is None else tuple(a.tobytes() for a in self.inside)
        return (type(self).__name__, self.bands, self.grid, self.decoding, self.source, self.opener,
                inside)  # fmt: skip

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for private in ("_local", "_spare", "_spare_lock"):
            state.pop(private, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._spare, self._spare_lock = {}, threading.Lock()

    # --- reading -------------------------------------------------------------------------------
    def read(self, window: Window, bands: Sequence[int] | None = None) -> np.ndarray:
        """Decoded float32 pixels ``(band, row, col)`` of ``window`` (on this source's grid)."""
        idx = list(range(len(self.bands))) if bands is None else list(bands)
        out = np.empty((len(idx), int(window.height), int(window.width)), dtype=np.float32)
        groups: dict[tuple, list[int]] = {}
        for pos, i in enumerate(idx):
            ref = self.bands[i]
            groups.setdefault((ref.path, ref.resampling), []).append(pos)
        for (path, _resampling), positions in groups.items():
            refs = [self.bands[idx[p]] for p in positions]
            try:
                raw = self._read_raw(path, refs, window)
            except RasterioError as exc:
                raise UnreadableInputError(
                    f"{path}: reading pixels failed ({exc}); the file is truncated or corrupt. "
                    "Re-create or re-download it."
                ) from None
            decoding = self.decoding.with_source(path)
            if refs[0].resampling is not None:  # resampled values mark nodata with NaN/fill
                extra = tuple(r.dst_nodata for r in refs if r.dst_nodata is not None)
                decoding = _with_nodata(replace(decoding, nan_is_nodata=True), extra)
            out[positions] = decoding.decode(raw)
        if self.inside is not None:
            rows, cols = self.inside
            r0, c0 = int(window.row_off), int(window.col_off)
            out[:, ~rows[r0 : r0 + out.shape[1]], :] = np.nan
            out[:, :, ~cols[c0 : c0 + out.shape[2]]] = np.nan
        return out

    def _read_raw(self, path: str, refs: Sequence[BandRef], window: Window) -> np.ndarray:
        """Raw values of ``window``: direct, numpy bilinear (same CRS), or through a WarpedVRT."""
        indexes = [r.index for r in refs]
        dataset = self._dataset(path, refs[0])
        if refs[0].resampling is None or isinstance(dataset, WarpedVRT):
            return dataset.read(indexes, window=window)
        native = make_grid(dataset.crs, dataset.transform, dataset.width, dataset.height)
        nodata = (refs[0].src_nodata,) if refs[0].src_nodata is not None else ()
        return bilinear_window(
            lambda w: dataset.read(indexes, window=w), native, self.grid, window, nodata
        )

    def _dataset(self, path: str, ref: BandRef) -> Any:
        """A per-thread open handle (a WarpedVRT when the band must be resampled)."""
        cache = getattr(self._local, "handles", None)
        if cache is None:
            cache = self._local.handles = {}
        key = (path, ref.resampling)
        if key not in cache:
            with self._spare_lock:
                src = self._spare.pop(path, None)
            src = src if src is not None else self.opener(path)
            if ref.resampling is None or _numpy_bilinear(ref, src, self.grid):
                cache[key] = src
            else:
                cache[key] = WarpedVRT(
                    src,
                    src_crs=warp_source_crs(src),
                    **grid_profile(self.grid),
                    resampling=ref.resampling,
                    src_nodata=ref.src_nodata,
                    nodata=ref.dst_nodata,
                )
        return cache[key]


def warp_source_crs(src: Any) -> CRS | None:
    """The CRS to warp ``src`` from: its own (``None``), except for a geographic raster whose
    columns run past ±180° (origin 179.99°, say), whose longitudes are then taken around that
    meridian (``+lon_wrap``). Otherwise the warper folds a projected grid's longitudes east of
    180° back to -180° and finds no source pixel there: half the scene would come out nodata."""
    crs, (left, right) = src.crs, (src.bounds.left, src.bounds.right)
    if not crosses_antimeridian(crs, left, right):
        return None
    return CRS.from_proj4(f"{crs.to_proj4()} +lon_wrap={180 if right > 180 else -180}")


def crosses_antimeridian(crs: Any, left: float, right: float) -> bool:
    """Whether a raster in ``crs`` spanning ``left`` to ``right`` runs past ±180° longitude."""
    return (
        crs is not None and CRS.from_user_input(crs).is_geographic and (left < -180 or right > 180)
    )


def _one_wide(index: int, size: int) -> slice:
    """``index`` (negative counts from the end) as the slice ``[index:index + 1]``."""
    i = int(index) + size if index < 0 else int(index)
    if not 0 <= i < size:
        raise IndexError(f"index {index} is out of bounds for size {size}")
    return slice(i, i + 1)


def _numpy_bilinear(ref: BandRef, src: Any, grid: GeoBox) -> bool:
    """Same-CRS bilinear resampling is done in numpy (window-independent, see resample.py)."""
    return ref.resampling == Resampling.bilinear and src.crs == rasterio_crs(grid)


def _with_nodata(decoding: Decoding, extra: tuple[float, ...]) -> Decoding:
    """The decoding plus the fill values a WarpedVRT writes outside the source's footprint."""
    if any(np.isnan(v) for v in extra):
        decoding = replace(decoding, nan_is_nodata=True)
    known = decoding.nodata
    merged = known + tuple(v for v in extra if not np.isnan(v) and v not in known)
    return replace(decoding, nodata=merged)
