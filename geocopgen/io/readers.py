"""Open an input (a GeoTIFF, a folder with one file per band, an xarray object) as a ModalityArray.

A *ModalityArray* (the project's data contract) is a lazy, dask-backed ``xarray.DataArray`` with
dims ``("band", "y", "x")``, float32 values in the modality's physical units, NaN where invalid,
rioxarray georeferencing, ``band`` = the modality's band names, and attrs ``modality``, ``units``,
``source`` and how the raw values were read (``Decoding.reading_attrs``: Sentinel-2 ``s2_offset``,
Sentinel-1 ``s1_scale``).

Opening is two steps so that ``geocopgen info`` can show what *would* be read without reading
pixels: :func:`plan_input` inspects files and decides modality, band order, grid, resampling and
decoding (an :class:`InputPlan`); :meth:`InputPlan.open` wraps a :class:`RasterSource` in dask and
returns an :class:`OpenedInput`: the array and the files behind it, handed on explicitly to the
readers that read those files onto another grid (:func:`bands_on_grid`).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import dask.array as dsa
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from dask.base import tokenize
from rasterio.enums import Resampling

from geocopgen.errors import (
    BandMismatchError,
    GeoCopGenError,
    GeoCopGenWarning,
    UnknownModalityError,
    UnreadableInputError,
)
from geocopgen.io.array import DEFAULT_CHUNK, modality_array
from geocopgen.io.decoding import (
    PHYSICAL,
    S1_LINEAR,
    S2_DN,
    TERRAMIND_CLASSES,
    Decoding,
    nodata_values,
)
from geocopgen.io.detect import Detection, detect_modality, looks_like_s1_db
from geocopgen.io.evidence import (  # noqa: F401  (DARK_FRACTION: re-exported)
    DARK_FRACTION,
    decide_lulc_scheme,
    decide_s1_scale,
    decide_s2_offset,
)
from geocopgen.io.raster_source import (
    BandRef,
    Opener,
    RasterSource,
    is_remote,
    name_path,
    open_dataset,
    probe,
)
from geocopgen.io.xarray_input import from_xarray
from geocopgen.modalities import Modality, get_modality
from geocopgen.raster.grid import GeoBox, at_resolution, describe, grid_of, pixel_size, rasterio_crs

log = logging.getLogger(__name__)

#: Extensions of raster files looked at in a one-file-per-band folder.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: A band name inside a file name, zero-padded or not: ``B02.tif``, ``B2.tif`` (SSL4EO-S12),
#: ``B8a.tif``, ``T33NZA_..._B8A_20m.jp2``, ``S2A_..._B02.tif``, ``vv.tif``.
_BAND_IN_NAME = re.compile(r"(?:^|[_\-.])(B(?:8A|0?[1-9]|1[0-2])|VV|VH)(?:[_\-.]|$)", re.IGNORECASE)
#: Side of the decimated sample read for data evidence (S2 offset, S1 scale).
_SAMPLE = 512


@dataclass(frozen=True)
class InputPlan:
    """Everything decided about an input before a pixel is read."""

    source: str
    detection: Detection
    grid: GeoBox
    bands: tuple[BandRef, ...]
    decoding: Decoding
    raw_dtype: str
    evidence: dict[str, str] = field(default_factory=dict)
    datetime: str | None = None
    opener: Opener | None = None  # how band paths are opened (None: files GDAL opens)
    #: the files planning opened, handed to the first reader so no file is opened twice
    handles: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def modality(self) -> Modality:
        return self.detection.modality

    def raster_source(self) -> RasterSource:
        decoding = self.decoding.with_source(self.source)
        spare = dict(self.handles)
        self.handles.clear()
        return RasterSource(self.bands, self.grid, decoding, self.source, self.opener, spare=spare)

    def open(self, chunks: int = DEFAULT_CHUNK) -> OpenedInput:
        """The lazy ModalityArray, with the files it reads."""
        attrs: dict[str, Any] = self.decoding.reading_attrs()
        if self.datetime:
            attrs["datetime"] = self.datetime
        files = self.raster_source()
        return OpenedInput(open_source(files, self.modality, attrs, chunks), files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what ``geocopgen info --json`` prints)."""
        g = self.grid
        out: dict[str, Any] = {
            "source": self.source,
            "modality": self.modality.name,
            "modality_long_name": self.modality.long_name,
            "detected_by": self.detection.evidence,
            "bands": [b.name for b in self.bands],
            "units": self.modality.units,
            "raw_dtype": self.raw_dtype,
            "encoding": self.decoding.encoding,
            "decode": self.decoding.describe(),
            "nodata": [_json_float(v) for v in self.decoding.nodata],
            "nan_is_nodata": self.decoding.nan_is_nodata,
            "crs": rasterio_crs(g).to_string(),
            "epsg": rasterio_crs(g).to_epsg(),
            "transform": list(g.affine)[:6],
            "width": g.width,
            "height": g.height,
            "resolution": list(pixel_size(g)),
            "bounds": list(g.boundingbox.bbox),
            "resampled": {b.name: b.resampling.name for b in self.bands if b.resampling},
            "files": sorted({b.path for b in self.bands}),
        }
        if self.modality.name.startswith("s2"):
            out["s2_offset"] = self.decoding.offset
        if self.datetime:
            out["datetime"] = self.datetime
        out.update({f"{k}_evidence": v for k, v in self.evidence.items()})
        return out


#: How the dask graph of an opened input is named (then the token of its RasterSource).
READ_PREFIX = "geocopgen-read-"


@dataclass(frozen=True, eq=False)  # identity: comparing DataArrays gives an array, not a bool
class OpenedInput:
    """An input opened once: its lazy ModalityArray and, when geocopgen opened it from files,
    those files (``files``). A reader that needs another grid (a resolution group, a warp across
    the antimeridian) reads ``files`` straight onto it; an input without files (an array a user
    gave, sliced, computed or as it was) is resampled from ``array``. Handed on explicitly, so
    what an input is read from never depends on how its array was sliced."""

    array: xr.DataArray
    files: RasterSource | None = None

    @property
    def source(self) -> str:
        """Where the input came from (a path, a URL or "array"), for messages and refusals."""
        return str(self.array.attrs.get("source", "array"))

    @classmethod
    def of(cls, data: xr.DataArray | OpenedInput) -> OpenedInput:
        """``data`` if opened already, else an array alone (no files)."""
        return data if isinstance(data, OpenedInput) else cls(data)

    @classmethod
    def recovered(cls, array: xr.DataArray) -> OpenedInput:
        """``array`` with its files found again when it is exactly what a reader opened: its
        ``source`` planned again with the decisions its attrs record (S2 offset, S1 scale)
        gives the same dask name, a token of the files, bands, grid and decoding that any
        slice, computation or other reading changes. Else the array alone, resampled from
        itself (an array opened with a nodata override or an LULC scheme included, since its
        attrs do not record them)."""
        name = getattr(array.data, "name", None)
        source = array.attrs.get("source")
        if not (isinstance(name, str) and name.startswith(READ_PREFIX) and source):
            return cls(array)
        scale = array.attrs.get("s1_scale", "auto")
        try:
            plan = plan_input(source, array.attrs.get("modality"),
                              offset=array.attrs.get("s2_offset"), s1_scale=scale)  # fmt: skip
        except (GeoCopGenError, OSError, ValueError):
            return cls(array)
        files = plan.raster_source()
        if f"{READ_PREFIX}{tokenize(files)}" != name:
            return cls(array)
        return cls(array, files)


def open_source(
    src: RasterSource, modality: Modality, attrs: Mapping[str, Any], chunks: int = DEFAULT_CHUNK
) -> xr.DataArray:
    """``src`` as a lazy ModalityArray (its bands; one dask chunk per file per window)."""
    data = dsa.from_array(
        src,
        chunks=(_file_runs(src.bands), chunks, chunks),
        asarray=False,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        name=f"{READ_PREFIX}{tokenize(src)}",
    )
    bands = [b.name for b in src.bands]
    return modality_array(data, src.grid, modality, source=src.source, bands=bands, **attrs)


def bands_on_grid(opened: OpenedInput, bands: Sequence[str], grid: GeoBox) -> xr.DataArray | None:
    """``bands`` of an input read from its files straight onto ``grid``, with the decisions it
    was read with (S2 offset, S1 scale, nodata): each band from its own file, resampled once,
    from its native grid, and only if that differs (a 20 m band of a SAFE onto a 20 m grid: the
    stored pixels). ``None`` for an input without files, which the caller then resamples as an
    array."""
    src = opened.files
    if src is None:
        return None
    by_name = {b.name: b for b in src.bands}
    native: dict[str, tuple[GeoBox, Any]] = {}
    refs = []
    for band in bands:
        ref = by_name[band]
        if ref.path not in native:
            ds = src.opener(ref.path)
            native[ref.path] = (grid_of(ds, source=ref.path), ds)
        grid_in, ds = native[ref.path]
        refs.append(_place(BandRef(ref.name, ref.path, ref.index), grid_in, grid, src.decoding, ds))
    spare = {path: ds for path, (_, ds) in native.items()}
    inside = _inside(grid, src.grid)
    moved = RasterSource(
        refs, grid, src.decoding, src.source, src.opener, spare=spare, inside=inside
    )
    array = opened.array
    attrs = {k: v for k, v in array.attrs.items() if k not in ("modality", "units", "source")}
    attrs.pop("_FillValue", None)
    return open_source(moved, get_modality(array.attrs["modality"]), attrs)


def _inside(grid: GeoBox, raster: GeoBox) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and columns of ``grid`` whose pixels lie wholly inside ``raster`` (same CRS, north
    up): a coarser group's edge pixel that also covers ground beyond the raster is nodata, as a
    resampling of the whole array makes it. ``None`` (every pixel) across CRSs."""
    if rasterio_crs(grid) != rasterio_crs(raster):
        return None
    left, bottom, right, top = raster.boundingbox.bbox
    t = grid.affine
    xs = t.c + t.a * np.arange(grid.width + 1)
    ys = t.f + t.e * np.arange(grid.height + 1)
    tol = 1e-6 * abs(t.a)
    cols = (xs[:-1] >= left - tol) & (xs[1:] <= right + tol)
    rows = (ys[:-1] <= top + tol) & (ys[1:] >= bottom - tol)
    return (rows, cols) if not (rows.all() and cols.all()) else None


def _file_runs(bands: Sequence[BandRef]) -> tuple[int, ...]:
    """Band chunks = runs of bands from one file: one read per file per window, and selecting
    bands (``isel(band=[...])``) picks whole chunks, which keeps chip reads windowed."""
    runs: list[int] = []
    for i, ref in enumerate(bands):
        if i and ref.path == bands[i - 1].path:
            runs[-1] += 1
        else:
            runs.append(1)
    return tuple(runs)


def _json_float(v: float) -> float | str:
    return "nan" if np.isnan(v) else v


# --- planning -------------------------------------------------------------------------------
def plan_input(
    path: str | Path,
    modality: str | Modality | None = None,
    *,
    offset: int | None = None,
    s1_scale: str = "auto",
    nodata: float | None = None,
    grid: GeoBox | None = None,
    lulc_scheme: str = "auto",
) -> InputPlan:
    """Inspect an input and decide how to read it (no pixel reads except small samples)."""
    remote = is_remote(path)
    p = name_path(str(path)) if remote else Path(path)
    if not remote and not p.exists():
        raise UnreadableInputError(f"{p}: no such file or folder. Check the path.")
    if s1_scale not in ("auto", "db", "linear"):
        raise ValueError(f"s1_scale must be 'auto', 'db' or 'linear', got {s1_scale!r}")
    handles = _Handles()  # every step of the plan shares one open dataset per file
    source = str(path) if remote else str(p)
    if not remote and p.is_dir():
        refs, detection, tags, product_id = _folder_bands(p, modality, handles)
    else:
        refs, detection, tags, product_id = _file_bands(source, p, modality, handles)
    m = detection.modality

    native = {
        path: _native_grid(handles(path), path) for path in dict.fromkeys(r.path for r in refs)
    }
    target = grid or _model_grid(refs, native, m)
    first = handles(refs[0].path)
    raw_dtype = first.dtypes[refs[0].index - 1]
    declared = [first.nodatavals[r.index - 1] for r in refs if r.path == refs[0].path]
    for r in refs[1:]:
        if r.path != refs[0].path:
            declared.append(handles(r.path).nodatavals[r.index - 1])
    if nodata is not None:
        declared = [nodata]
    nodatas = nodata_values(declared)
    nan_is_nodata = any(np.isnan(v) for v in nodatas)

    sample = _sampler(refs, handles)
    evidence: dict[str, str] = {}
    encoding, off = PHYSICAL, 0
    if m.name.startswith("s2"):
        if np.dtype(raw_dtype).kind in "iu" or _looks_like_dn(sample, nodatas):
            encoding = S2_DN
            off, evidence["s2_offset"] = decide_s2_offset(
                offset, product_id=product_id, tags=tags, sample=sample, source=source
            )
        else:
            evidence["encoding"] = "float values <= 10: already reflectance"
    elif m.name == "s1rtc":
        scale, evidence["s1_scale"] = decide_s1_scale(
            s1_scale, path=p, tags=tags, sample=sample, nodata=nodatas, source=source
        )
        encoding = S1_LINEAR if scale == "linear" else PHYSICAL
    elif m.name == "lulc":
        scheme, evidence["lulc_scheme"] = decide_lulc_scheme(
            lulc_scheme, path=p, tags=tags, sample=sample, nodata=nodatas
        )
        encoding = TERRAMIND_CLASSES if scheme == "terramind" else PHYSICAL
    if str(tags.get("ENCODING", "")).lower() == PHYSICAL:
        encoding, off = PHYSICAL, 0
        evidence["encoding"] = "ENCODING=physical tag (a geocopgen output)"
    decoding = Decoding(m, encoding, off, nodatas, nan_is_nodata, source)
    if encoding == S2_DN and np.dtype(raw_dtype).kind in "if":
        values = sample(m.band_names)
        declared = np.isin(values, [v for v in nodatas if not np.isnan(v)])
        _warn_negative_dns(values[~declared], source, decimated=_decimated(refs, handles))

    bands = tuple(_place(r, native[r.path], target, decoding, handles(r.path)) for r in refs)
    when = _acquired(tags, product_id)
    return InputPlan(
        source, detection, target, bands, decoding, raw_dtype, evidence, when, handles=handles.open
    )


class _Handles:
    """One open dataset per file for the whole plan (opened on first use, never twice)."""

    def __init__(self) -> None:
        self.open: dict[str, Any] = {}

    def __call__(self, path: str) -> Any:
        if path not in self.open:
            self.open[path] = open_dataset(path)
        return self.open[path]


def plan_bands(
    bands: Mapping[str, str],
    modality: str | Modality,
    grid: GeoBox,
    *,
    source: str,
    encoding: str | None = None,
    offset: int | None = None,
    product_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nodata: Sequence[float] = (),
    resolutions: Mapping[str, float] | None = None,
    raw_dtype: str | None = None,
    opener: Opener | None = None,
) -> InputPlan:
    """Plan reading one-band files a *source* has described, without opening any of them.

    For catalogued products (Major TOM): what :func:`plan_input` learns from file headers, the
    source states. ``bands`` maps each of the modality's band names to the path (or ``opener``
    key) of a one-band file; ``resolutions`` gives bands' native pixel sizes (default: the
    modality registry's), on ``grid``'s origin and extent; ``encoding`` is how values are stored
    (default: digital numbers for Sentinel-2, physical units otherwise); ``nodata`` the raw
    values meaning "no data" (NaN included if NaN is one). The Sentinel-2 offset is decided from
    ``offset``, ``product_id`` and ``tags`` as :func:`plan_input` does, minus the pixel sample.

    The result is the plan :func:`plan_input` makes for the same files (same grid, resampling,
    decoding), so the pixels read are the same. Since no header was read, the ``opener`` should
    check each band against ``grid`` and its stated resolution when it opens it.
    """
    m = get_modality(modality)
    missing = [b for b in m.band_names if b not in bands]
    if missing:
        raise BandMismatchError(
            f"{source}: {m.long_name} needs {', '.join(m.band_names)}; no "
            f"{', '.join(missing)} given. Supply those bands or name another modality."
        )
    tags = dict(tags or {})
    nodatas = nodata_values(list(nodata))
    if encoding is None:
        encoding = S2_DN if m.name.startswith("s2") else PHYSICAL
    off, evidence = 0, {}
    if encoding == S2_DN:
        off, evidence["s2_offset"] = decide_s2_offset(
            offset, product_id=product_id, tags=tags, sample=_no_sample, source=source
        )
    nan_is_nodata = any(np.isnan(v) for v in nodatas)
    decoding = Decoding(m, encoding, off, nodatas, nan_is_nodata, source)
    native_res = {b.name: b.resolution for b in m.bands} | dict(resolutions or {})
    dtype = np.dtype(raw_dtype) if raw_dtype else None
    refs = []
    for name in m.band_names:
        ref = BandRef(name, bands[name], 1)
        res = native_res[name]
        if not np.allclose(pixel_size(grid), (res, res)):
            ref = _resampled(ref, at_resolution(grid, res), grid, decoding, dtype)
        refs.append(ref)
    detection = Detection(m, "stated by the source")
    when = _acquired(tags, product_id)
    return InputPlan(
        source, detection, grid, tuple(refs), decoding, raw_dtype or "unknown", evidence, when,
        opener,
    )


def _no_sample(names: Sequence[str]) -> np.ndarray:
    """No pixel sample before reading: offset evidence must come from metadata."""
    return np.empty(0)


def _acquired(tags: Mapping[str, Any], product_id: str | None) -> str | None:
    """Acquisition time from a ``datetime`` tag or the product id (ISO 8601), if known."""
    for key in ("datetime", "DATETIME", "ACQUISITION_DATETIME"):
        if tags.get(key):
            return str(tags[key])
    m = re.search(r"(?:^|_)(\d{8}T\d{6})_", (product_id or "") + "_")
    if m:
        t = m.group(1)
        return f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[9:11]}:{t[11:13]}:{t[13:15]}"
    return None


def _native_grid(ds: Any, path: str) -> GeoBox:
    grid = grid_of(ds, source=path)
    probe(ds, path)
    return grid


def _file_bands(
    location: str, path: PurePath, stated: str | Modality | None, handles: _Handles
) -> tuple[list[BandRef], Detection, dict[str, str], str | None]:
    """One file's bands; ``location`` is what GDAL opens (a local path, a URL), ``path`` its
    file and folder names."""
    ds = handles(location)
    grid_of(ds, source=location)  # no CRS / rotated: say so first
    count = ds.count
    names = [d for d in ds.descriptions]
    tags = dict(ds.tags())
    try:
        detection = detect_modality(
            path=path, count=count, band_names=names, tags=tags, stated=stated
        )
    except UnknownModalityError:
        detection = _detect_by_values(ds, location, count)
    m = detection.modality
    upper = [str(n).upper() if n else None for n in names]
    if all(upper) and set(upper) == {b.upper() for b in m.band_names}:
        order = [upper.index(b.upper()) + 1 for b in m.band_names]
    else:
        order = list(range(1, count + 1))
    refs = [BandRef(b, location, i) for b, i in zip(m.band_names, order, strict=True)]
    product_id = tags.get("PRODUCT_ID") or _product_id_in(path.stem, path.parent.name)
    return refs, detection, tags, product_id


def _detect_by_values(ds: Any, path: str, count: int) -> Detection:
    """Last evidence: a two-band float raster whose values are dB backscatter is Sentinel-1
    (with a warning, since the values decided it); anything else is refused as before."""
    floats = count == 2 and all(np.dtype(d).kind == "f" for d in ds.dtypes)
    why = looks_like_s1_db(_overview(ds)) if floats else None
    if why is None:
        detect_modality(path=path, count=count)  # raises the usual UnknownModalityError
    warnings.warn(
        f"{path}: taken as Sentinel-1 RTC (VV, VH in dB) from its values: {why}. If it is "
        "something else, name it (API modality=..., CLI --modality ...).",
        GeoCopGenWarning,
        stacklevel=4,
    )
    return Detection(get_modality("s1rtc"), f"values: {why}")


def _overview(ds: Any) -> np.ndarray:
    """A decimated read of every band (at most ``_SAMPLE`` px a side), nodata as NaN."""
    scale = max(1, -(-max(ds.height, ds.width) // _SAMPLE))
    shape = (ds.count, -(-ds.height // scale), -(-ds.width // scale))
    values = ds.read(out_shape=shape).astype(np.float64)
    for i, nd in enumerate(ds.nodatavals):
        if nd is not None:
            values[i][values[i] == nd] = np.nan
    return values


def _band_name(match: re.Match[str]) -> str:
    """The registry's spelling of a band in a file name: ``b2`` → ``B02``, ``B8a`` → ``B8A``."""
    name = match.group(1).upper()
    return f"B0{name[1]}" if re.fullmatch(r"B\d", name) else name


def _folder_bands(
    folder: Path, stated: str | Modality | None, handles: _Handles
) -> tuple[list[BandRef], Detection, dict[str, str], str | None]:
    found: dict[str, Path] = {}
    others: list[str] = []
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in RASTER_SUFFIXES:
            continue
        m = _BAND_IN_NAME.search(f.stem)
        if not m:
            others.append(f.name)
            continue
        name = _band_name(m)
        if name in found:
            raise BandMismatchError(
                f"{folder}: two files for band {name} ({found[name].name}, {f.name}); keep one."
            )
        found[name] = f
    unnamed = _unnamed(others)
    if not found:
        raise UnreadableInputError(
            f"{folder}: no band files found (expected names like B02.tif, B2.tif or VV.tif)"
            f"{unnamed}. Pass a GeoTIFF, or a folder with one file per band."
        )
    if stated is not None:
        detection = Detection(get_modality(stated), "stated")
    else:
        try:
            detection = detect_modality(path=folder, count=len(found), band_names=list(found))
        except BandMismatchError:
            detection = _folder_by_subset(folder, found)
        except UnknownModalityError:
            raise UnknownModalityError(
                f"{folder}: cannot tell which modality its {len(found)} band files are "
                f"({', '.join(found)}){unnamed}. Name the modality (API modality=..., CLI "
                "--modality ...)."
            ) from None
    m = detection.modality
    missing = [b for b in m.band_names if b.upper() not in found]
    if missing:
        raise BandMismatchError(
            f"{folder}: {m.long_name} needs {', '.join(m.band_names)}; of its "
            f"{len(found) + len(others)} raster files, none holds {', '.join(missing)}"
            f"{unnamed}. Add those files or name another modality."
        )
    refs = [BandRef(b, str(found[b.upper()]), 1) for b in m.band_names]
    tags = dict(handles(refs[0].path).tags())
    names = (folder.name, Path(refs[0].path).stem, folder.parent.name)
    product_id = tags.get("PRODUCT_ID") or _product_id_in(*names)
    return refs, detection, tags, product_id


def _unnamed(names: Sequence[str]) -> str:
    """The part of a folder message about raster files with no band name in them."""
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"; {len(names)} raster file(s) have no band name geocopgen recognises ({shown})"


def _folder_by_subset(folder: Path, found: Mapping[str, Path]) -> Detection:
    """Path words said one modality but the band files say another: trust complete band sets."""
    from geocopgen.modalities import MODALITIES

    for m in MODALITIES.values():
        if {b.upper() for b in m.band_names} == set(found):
            return Detection(m, "band file names")
    raise BandMismatchError(
        f"{folder}: its band files ({', '.join(sorted(found))}) are not the bands of any modality. "
        "Name the modality (API modality=..., CLI --modality ...)."
    )


#: A name carrying a Sentinel-2 product's identity: an ESA product id (``S2B_MSIL2A_20180204T0940
#: 29_N9999_...``; BigEarthNet patches keep it) or an Earth Engine asset id (``20200405T101021_
#: 20200405T101022_T33UUP``; SSL4EO-S12 folders).
_PRODUCT_IN_NAME = re.compile(
    r"MSIL(1C|2A)|(?:^|_)\d{8}T\d{6}_\d{8}T\d{6}_T\d{2}[A-Z]{3}(?:_|$)", re.IGNORECASE
)


def _product_id_in(*names: str) -> str | None:
    """The first of ``names`` (file, folder, band file and parent names) carrying a product id:
    the acquisition date and processing baseline are read from it."""
    return next((n for n in names if _PRODUCT_IN_NAME.search(n)), None)


def _model_grid(refs: Sequence[BandRef], native: Mapping[str, GeoBox], m: Modality) -> GeoBox:
    """The grid of the first band already at the model resolution, else the finest band's grid.

    A single-grid input (one file, a 30 m DEM...) keeps its own grid: it is resampled only when
    a ``grid`` is asked for.
    """
    grids = [native[r.path] for r in refs]
    for g in grids:
        if np.isclose(pixel_size(g)[0], m.resolution) and np.isclose(
            pixel_size(g)[1], m.resolution
        ):
            return g
    return min(grids, key=lambda g: pixel_size(g)[0] * pixel_size(g)[1])


def _place(ref: BandRef, native: GeoBox, target: GeoBox, decoding: Decoding, ds: Any) -> BandRef:
    """The band as read on ``target``: resampled (explicitly) only if its grid differs."""
    if native == target:
        return ref
    return _resampled(ref, native, target, decoding, np.dtype(ds.dtypes[ref.index - 1]))


def _resampled(
    ref: BandRef, native: GeoBox, target: GeoBox, decoding: Decoding, dtype: np.dtype | None
) -> BandRef:
    """``ref`` resampled from ``native`` onto ``target``, with the nodata the resampler needs
    (``dtype`` None: unknown until read, so the fill outside the source is NaN)."""
    res = choose_resampling(native, target)
    src_nd = decoding.nodata[0] if decoding.nodata else (0 if decoding.encoding == S2_DN else None)
    fill = _fill_for(dtype) if dtype is not None else float("nan")
    dst_nd = src_nd if src_nd is not None else fill
    log.info(
        "%s: band %s resampled onto %s with %s", ref.path, ref.name, describe(target), res.name
    )
    return BandRef(ref.name, ref.path, ref.index, res, src_nd, dst_nd)


def choose_resampling(native: GeoBox, target: GeoBox) -> Resampling:
    """Bilinear when the target is as fine or finer; average when it is coarser. Never nearest.

    The comparison is on pixel area in a common unit (metres when one CRS is geographic).
    """
    src_area = _pixel_area_m2(native)
    dst_area = _pixel_area_m2(target)
    return Resampling.average if dst_area > 1.5 * src_area else Resampling.bilinear


def _pixel_area_m2(grid: GeoBox) -> float:
    rx, ry = pixel_size(grid)
    if rasterio_crs(grid).is_geographic:
        _, bottom, _, top = grid.boundingbox.bbox
        lat = np.deg2rad((bottom + top) / 2)
        return (rx * 111_320.0 * np.cos(lat)) * (ry * 110_574.0)
    return rx * ry


def _fill_for(dtype: np.dtype) -> float:
    """A fill value a WarpedVRT can write outside the source's footprint."""
    if dtype.kind == "f":
        return float("nan")
    info = np.iinfo(dtype)
    return float(info.min if dtype.kind == "i" else info.max)


# --- evidence from metadata and data --------------------------------------------------------
def _sampler(
    refs: Sequence[BandRef], handles: Callable[[str], Any]
) -> Callable[[Sequence[str]], np.ndarray]:
    """Reads a decimated (<= 512 px a side) sample of the named bands: raw values, flattened."""

    def sample(names: Sequence[str]) -> np.ndarray:
        chosen = [r for r in refs if r.name in names] or list(refs[:1])
        out = []
        for r in chosen:
            ds = handles(r.path)
            h, w = min(ds.height, _SAMPLE), min(ds.width, _SAMPLE)
            out.append(ds.read(r.index, out_shape=(h, w), resampling=Resampling.nearest))
        return np.concatenate([a.ravel() for a in out])

    return sample


def _decimated(refs: Sequence[BandRef], handles: Callable[[str], Any]) -> bool:
    """Whether :func:`_sampler` reads less than every pixel of these bands."""
    return any(max(handles(r.path).height, handles(r.path).width) > _SAMPLE for r in refs)


def _warn_negative_dns(values: np.ndarray, source: str, *, decimated: bool) -> None:
    """Say how many Sentinel-2 digital numbers are negative: no product stores one (DNs are
    unsigned), so a signed file holding them (besides its declared nodata) was made by a broken
    step; they are read as nodata (:meth:`Decoding.invalid`), not as negative reflectance."""
    negative = values[values < 0]
    if not negative.size:
        return
    where = "in a decimated sample" if decimated else "of its pixel values"
    warnings.warn(
        f"{source}: {negative.size} {where} ({negative.size / values.size:.2%}) are negative "
        f"digital numbers (down to {negative.min():g}), which Sentinel-2 never stores; they are "
        "read as nodata.",
        GeoCopGenWarning,
        stacklevel=4,
    )


def _looks_like_dn(sample: Callable[[Sequence[str]], np.ndarray], nodata: Sequence[float]) -> bool:
    """A float Sentinel-2 file holds DNs (not reflectance) if its median is above 10."""
    values = sample(("B02", "B03", "B04")).astype(np.float64).ravel()
    valid = values[np.isfinite(values) & (values != 0)]
    return bool(valid.size) and float(np.median(valid)) > 10


# --- public entry points --------------------------------------------------------------------
def open_input(
    path: str | Path | xr.DataArray,
    modality: str | Modality | None = None,
    *,
    offset: int | None = None,
    s1_scale: str = "auto",
    nodata: float | None = None,
    grid: GeoBox | None = None,
    chunks: int = DEFAULT_CHUNK,
    lulc_scheme: str = "auto",
) -> OpenedInput:
    """Open a GeoTIFF, a one-file-per-band folder or an xarray object once, as an
    :class:`OpenedInput`: a file or folder with the files it reads, an xarray object without
    (resampled from the array wherever another grid is needed).

    ``modality`` is detected when omitted (see :mod:`geocopgen.io.detect`); ``offset`` overrides
    the Sentinel-2 DN offset; ``s1_scale`` is ``"auto"``, ``"db"`` or ``"linear"``; ``nodata``
    overrides the declared nodata (``float("nan")`` declares NaN as nodata); ``grid`` reads every
    band resampled onto another grid (bilinear, or average when coarser; never nearest);
    ``lulc_scheme`` says whether land cover holds ESRI codes (``"esri"``) or TerraMind class
    indices (``"terramind"``), decided from tags, path and values when ``"auto"``.
    """
    if isinstance(path, xr.DataArray):
        return OpenedInput(from_xarray(path, modality, offset=offset, s1_scale=s1_scale))
    plan = plan_input(
        path,
        modality,
        offset=offset,
        s1_scale=s1_scale,
        nodata=nodata,
        grid=grid,
        lulc_scheme=lulc_scheme,
    )
    return plan.open(chunks=chunks)


def open_raster(
    path: str | Path | xr.DataArray,
    modality: str | Modality | None = None,
    **options: Any,
) -> xr.DataArray:
    """Open a GeoTIFF, a one-file-per-band folder or an xarray object as a lazy ModalityArray
    (the array of :func:`open_input`, which takes the same options)."""
    return open_input(path, modality, **options).array
