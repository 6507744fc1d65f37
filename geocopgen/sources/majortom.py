"""Major TOM datasets: a metadata table plus band GeoTIFFs, in a folder or in parquet shards.

Two layouts hold the same products (reference §2.2):

* **parquet**: a ``metadata.parquet`` (one row per product: ``grid_cell, grid_row_u,
  grid_col_r, product_id, timestamp, cloud_cover, nodata, crs, parquet_url, parquet_row``)
  pointing into shards where each row group is one product and each band column holds the
  band's GeoTIFF bytes. Shards are read one row group at a time through fsspec, so remote
  ``https://`` shards cost only the bytes of the products asked for.
* **folder**: what the official downloader extracts, ``<root>/<source>/<row>/<cell>/<product>/
  <band>.tif``. The table is built by scanning it.

:class:`MajorTOM` holds that table, filters it (cells, bbox or geometry, dates, cloud cover,
nodata fraction), and opens each product as a lazy ModalityArray on the product's 10 m grid,
whose transform comes from the Major TOM grid itself (and is checked against every band file
when the pixels are read).

Reading goes through :mod:`geocopgen.io`, the one reading path of geocopgen: a product becomes a
:func:`~geocopgen.io.plan_bands` plan (band files by path, or the row group's GeoTIFF bytes in
a :class:`~geocopgen.io.MemoryBands`), so a Major TOM product reads exactly as
``geocopgen.io.open_raster(<product folder>)`` reads it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from geocopgen.errors import DataSourceError
from geocopgen.io import MemoryBands, plan_bands
from geocopgen.io.decoding import PHYSICAL, S1_LINEAR, S2_DN
from geocopgen.modalities import Modality, get_modality
from geocopgen.raster.grid import GeoBox
from geocopgen.sources._raster import BandCheck, CheckedFiles
from geocopgen.sources.majortom_grid import get_grid, parse_cell

log = logging.getLogger(__name__)

#: Major TOM dataset name → geocopgen modality, and band file/column names where they differ.
SOURCE_MODALITY = {
    "Core-S2L2A": "s2l2a",
    "Core-S2L1C": "s2l1c",
    "Core-S1RTC": "s1rtc",
    "Core-DEM": "dem",
}
BAND_ALIASES = {"dem": {"elevation": "DEM"}}
#: How each dataset stores its values, and the raw values it uses for "no data" besides NaN
#: (Sentinel-2 DN 0 is nodata by the S2 decoding rule). Core-DEM marks missing pixels -32767
#: (dataset card); Core-S1RTC -32768 (the official S1 thumbnail code). Band resolutions are the
#: modality registry's (S2 10/20/60 m, S1 10 m, DEM 30 m).
ENCODING = {"Core-S2L2A": S2_DN, "Core-S2L1C": S2_DN, "Core-S1RTC": S1_LINEAR, "Core-DEM": PHYSICAL}
NODATA: dict[str, tuple[float, ...]] = {
    "Core-S2L2A": (),
    "Core-S2L1C": (),
    "Core-S1RTC": (-32768.0, float("nan")),
    "Core-DEM": (-32767.0, float("nan")),
}
#: Stored dtype where the dataset fixes it (only used to pick a resampling fill value).
RAW_DTYPE = {"Core-S2L2A": "uint16", "Core-S2L1C": "uint16"}
#: Metadata columns every table has after loading (missing ones are filled with NaN/None).
COLUMNS = (
    "grid_cell", "grid_row_u", "grid_col_r", "product_id", "timestamp", "cloud_cover",
    "nodata", "crs", "parquet_url", "parquet_row", "path",
)  # fmt: skip


@dataclass
class MajorTOM:
    """One Major TOM dataset (e.g. Core-S2L2A): a product table and how to read it.

    Build it with :meth:`from_folder` or :meth:`from_metadata`; narrow it with :meth:`filter`
    and :meth:`latest`; read products with :meth:`open` or :meth:`iter_arrays`.
    """

    table: pd.DataFrame
    modality: Modality
    source: str = "Core-S2L2A"
    shards_dir: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_folder(cls, root: str | Path, source: str | None = None) -> MajorTOM:
        """Scan ``<root>/<source>/<row>/<cell>/<product>/`` (or ``<root>`` = the source folder)."""
        root = Path(root)
        if source is None:
            source = root.name if root.name in SOURCE_MODALITY else _only_source(root)
        base = root if root.name == source else root / source
        modality = _modality_for(source)
        rows = []
        for product in sorted(base.glob("*/*/*")):
            if not product.is_dir():
                continue
            cell = parse_cell(product.parent.name)
            rows.append(
                {
                    "grid_cell": cell.name,
                    "grid_row_u": cell.row,
                    "grid_col_r": cell.col,
                    "product_id": product.name,
                    "timestamp": _timestamp_from_product_id(product.name),
                    "path": str(product),
                }
            )
        if not rows:
            raise DataSourceError(
                f"{base}: no products found; expected the Major TOM layout "
                f"<root>/{source}/<row>/<cell>/<product>/<band>.tif"
            )
        return cls(_normalise_table(pd.DataFrame(rows)), modality, source)

    @classmethod
    def from_metadata(
        cls,
        metadata: str | Path | pd.DataFrame,
        source: str | None = None,
        *,
        shards_dir: str | Path | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> MajorTOM:
        """Load a ``metadata.parquet`` (local path, URL or DataFrame) of a parquet dataset.

        ``shards_dir`` points the ``parquet_url`` of every row at a local mirror (the shard's
        file name is kept). ``source`` defaults to the ``Major-TOM/<source>`` part of the URLs.
        """
        if isinstance(metadata, pd.DataFrame):
            table = metadata.copy()
        else:
            try:
                table = pd.read_parquet(str(metadata), storage_options=storage_options or None)
            except (OSError, ValueError) as exc:
                raise DataSourceError(
                    f"{metadata}: cannot read the Major TOM metadata parquet ({exc})"
                ) from exc
        if "geometry" in table.columns:
            table = table.drop(columns="geometry")
        source = source or _source_from_urls(table)
        table = _normalise_table(table)
        return cls(
            table,
            _modality_for(source),
            source,
            None if shards_dir is None else str(shards_dir),
            dict(storage_options or {}),
        )

    # --- selection ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    @property
    def cells(self) -> list[str]:
        return sorted(set(self.table.grid_cell))

    def _with(self, table: pd.DataFrame) -> MajorTOM:
        return MajorTOM(
            table.reset_index(drop=True),
            self.modality,
            self.source,
            self.shards_dir,
            self.storage_options,
        )

    def filter(
        self,
        *,
        cells: Iterable[str] | None = None,
        area: Sequence[float] | Any | None = None,
        dates: tuple[Any, Any] | None = None,
        cloud_cover: tuple[float, float] | None = None,
        nodata: tuple[float, float] | None = None,
    ) -> MajorTOM:
        """Keep the products matching every criterion given (ranges are inclusive).

        ``area`` is a ``(west, south, east, north)`` bbox in degrees (antimeridian-crossing
        allowed), a shapely geometry in lon/lat, or a GeoDataFrame; it selects the grid cells
        that intersect it. ``cloud_cover`` is in percent and ``nodata`` a fraction, as in the
        official metadata; rows without a value (a scanned folder) fail those filters.
        """
        t = self.table
        keep = np.ones(len(t), dtype=bool)
        if cells is not None:
            names = {parse_cell(c).name for c in ([cells] if isinstance(cells, str) else cells)}
            keep &= t.grid_cell.isin(names).to_numpy()
        if area is not None:
            from geocopgen.sources.majortom_grid import cells_for

            keep &= t.grid_cell.isin(set(cells_for(area).grid_cell)).to_numpy()
        if dates is not None:
            start, end = (pd.Timestamp(d) if d is not None else None for d in dates)
            ts = t.timestamp
            if start is not None:
                keep &= (ts >= _like_tz(start, ts)).to_numpy()
            if end is not None:
                keep &= (ts <= _like_tz(end, ts)).to_numpy()
        for column, bounds in (("cloud_cover", cloud_cover), ("nodata", nodata)):
            if bounds is not None:
                values = t[column].to_numpy(dtype=float)
                keep &= (values >= bounds[0]) & (values <= bounds[1])
        return self._with(t[keep])

    def latest(self) -> MajorTOM:
        """One product per cell, the most recent (official downloader: ``criteria="latest"``)."""
        t = self.table.sort_values(["grid_cell", "timestamp"], ascending=[True, False])
        return self._with(t.drop_duplicates("grid_cell", keep="first").sort_values("grid_cell"))

    # --- reading ------------------------------------------------------------------------
    def open(self, index: int | str = 0) -> xr.DataArray:
        """Product → lazy ModalityArray on its 10 m Major TOM grid (nothing read yet).

        ``index`` is a row position in :attr:`table` or a cell id (its first product). Band
        files are checked against the grid when first read (:class:`BandCheck`).
        """
        row = self._row(index)
        m = self.modality
        label = f"{self.source}/{row['grid_cell']}/{row['product_id']}"
        in_folder = isinstance(row["path"], str)
        location, grid, paths = self._folder(row) if in_folder else self._shard(row, label)
        encoding, nodata = ENCODING[self.source], NODATA[self.source]
        resolutions = {b.name: b.resolution for b in m.bands}
        invalid = nodata + ((0.0,) if encoding == S2_DN else ())
        check = BandCheck.for_plan(grid, paths, resolutions, label, invalid)
        if in_folder:
            opener: Any = CheckedFiles(check)
        else:
            names = band_names(m)
            columns = tuple((paths[b], names[b]) for b in m.band_names)
            fetch = functools.partial(
                _read_row_group, location, int(row["parquet_row"]), columns, self.storage_options
            )
            opener = MemoryBands(fetch, check)
        when = "" if pd.isna(row["timestamp"]) else pd.Timestamp(row["timestamp"]).isoformat()
        plan = plan_bands(
            paths,
            m,
            grid,
            source=location,
            encoding=encoding,
            product_id=row["product_id"],
            tags={"datetime": when} if when else {},
            nodata=nodata,
            raw_dtype=RAW_DTYPE.get(self.source),
            opener=opener,
        )
        arr = plan.open().array
        arr.attrs.update(grid_cell=row["grid_cell"], product_id=row["product_id"], datetime=when)
        return arr

    def _folder(self, row: pd.Series) -> tuple[str, GeoBox, dict[str, str]]:
        """Folder layout: the grid from a band header, the band files by name."""
        folder = Path(row["path"])
        files = {p.stem.upper(): str(p) for p in folder.glob("*.tif")}
        # A missing file keeps its expected path: it fails, named, when read.
        paths = {
            b: files.get(n.upper(), str(folder / f"{n}.tif"))
            for b, n in band_names(self.modality).items()
        }
        return str(folder), _grid_from_folder(folder, self.modality), paths

    def _shard(self, row: pd.Series, label: str) -> tuple[str, GeoBox, dict[str, str]]:
        """Parquet layout: the grid from the Major TOM grid, bands keyed ``label/band``."""
        crs = row["crs"]
        if not isinstance(crs, str) or not crs:
            raise DataSourceError(f"{label}: the metadata has no crs")
        grid = get_grid().product_grid(row["grid_cell"], crs=crs)
        paths = {b: f"{label}/{b}" for b in self.modality.band_names}
        return self._shard_url(row), grid, paths

    def iter_arrays(self) -> Iterator[xr.DataArray]:
        """Every product of the table, in order, as lazy ModalityArrays."""
        for i in range(len(self.table)):
            yield self.open(i)

    def _row(self, index: int | str) -> pd.Series:
        if isinstance(index, str):
            name = parse_cell(index).name
            hits = self.table.index[self.table.grid_cell == name]
            if len(hits) == 0:
                raise DataSourceError(f"{self.source}: no product for cell {name} in this table")
            index = int(hits[0])
        if not 0 <= index < len(self.table):
            raise DataSourceError(f"{self.source}: row {index} out of range (0..{len(self) - 1})")
        return self.table.iloc[index]

    def _shard_url(self, row: pd.Series) -> str:
        url = row["parquet_url"]
        if not isinstance(url, str) or pd.isna(row["parquet_row"]):
            raise DataSourceError(
                f"{self.source}/{row['grid_cell']}: the table has neither a folder path nor a "
                "parquet_url/parquet_row for this product"
            )
        if self.shards_dir is not None:
            return str(Path(self.shards_dir) / url.split("?")[0].rsplit("/", 1)[-1])
        return url


def common_cells(*sources: MajorTOM) -> list[str]:
    """Cells present in every source (the official downloader's cross-source intersection)."""
    sets = [set(s.table.grid_cell) for s in sources]
    return sorted(set.intersection(*sets)) if sets else []


def _grid_from_folder(product: Path, modality: Modality) -> GeoBox:
    """The 10 m grid of a product folder, from its first band file's header (exact)."""
    import rasterio

    files = sorted(product.glob("*.tif"))
    if not files:
        raise DataSourceError(f"{product}: no band GeoTIFFs in this product folder")
    try:
        with rasterio.open(files[0]) as ds:
            crs, b = ds.crs, ds.bounds
    except rasterio.errors.RasterioIOError as exc:
        raise DataSourceError(f"{files[0]}: cannot read the GeoTIFF header ({exc})") from exc
    res = modality.resolution
    shape = (round((b.top - b.bottom) / res), round((b.right - b.left) / res))
    return GeoBox(shape, Affine(res, 0.0, b.left, 0.0, -res, b.top), crs)


# --- band access --------------------------------------------------------------------------
def band_names(modality: Modality) -> dict[str, str]:
    """Modality band name → the dataset's band file stem / parquet column (``elevation`` → DEM)."""
    aliases = BAND_ALIASES.get(modality.name, {})
    return {b: aliases.get(b, b) for b in modality.band_names}


def _read_row_group(
    url: str, row_group: int, columns: tuple[tuple[str, str], ...], storage_options: dict[str, Any]
) -> dict[str, bytes]:
    """One product's band GeoTIFF bytes, ``{key: bytes}``, from row group ``row_group``.

    ``columns`` pairs each band's key with its parquet column; only those columns and that row
    group are fetched (fsspec reads the byte ranges it needs from remote shards).
    """
    import pyarrow.parquet as pq
    from fsspec.parquet import open_parquet_file

    wanted = [c for _, c in columns]
    try:
        with open_parquet_file(url, columns=wanted, row_groups=[row_group], **storage_options) as f:
            pf = pq.ParquetFile(f)
            have = set(pf.schema_arrow.names)
            table = pf.read_row_group(row_group, columns=[c for c in wanted if c in have])
    except (OSError, ValueError, IndexError) as exc:
        raise DataSourceError(f"{url}: cannot read row group {row_group} ({exc})") from exc
    if table.num_rows != 1:
        raise DataSourceError(
            f"{url}: row group {row_group} holds {table.num_rows} rows; Major TOM shards hold "
            "exactly one product per row group"
        )
    values = {c: table.column(c)[0].as_py() for c in table.column_names}
    missing = [c for c in wanted if values.get(c) is None]
    if missing:
        raise DataSourceError(
            f"{url}: row group {row_group} has no {', '.join(missing)}; the product is incomplete"
        )
    return {key: values[c] for key, c in columns}


# --- table helpers ------------------------------------------------------------------------
def _modality_for(source: str) -> Modality:
    if source in SOURCE_MODALITY:
        return get_modality(SOURCE_MODALITY[source])
    raise DataSourceError(
        f"unknown Major TOM source {source!r}; geocopgen reads {', '.join(SOURCE_MODALITY)}"
    )


def _only_source(root: Path) -> str:
    found = [p.name for p in root.iterdir() if p.name in SOURCE_MODALITY]
    if len(found) != 1:
        raise DataSourceError(
            f"{root}: found Major TOM sources {found or 'none'}; pass source= to pick one of "
            f"{', '.join(SOURCE_MODALITY)}"
        )
    return found[0]


def _source_from_urls(table: pd.DataFrame) -> str:
    for url in table.get("parquet_url", pd.Series(dtype=object)).dropna()[:1]:
        for name in SOURCE_MODALITY:
            if f"/{name}/" in str(url):
                return name
    raise DataSourceError("cannot tell the Major TOM source from parquet_url; pass source=")


def _timestamp_from_product_id(product_id: str) -> pd.Timestamp | None:
    parts = [p for p in product_id.split("_") if len(p) == 15 and p[8] == "T"]
    return pd.Timestamp(parts[0]) if parts else None


def _normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fill missing columns, fix the metadata's ``EPSG:EPSG:`` typo, parse timestamps."""
    t = table.copy()
    for col in COLUMNS:
        if col not in t.columns:
            t[col] = np.nan if col in ("cloud_cover", "nodata", "parquet_row") else None
    if "grid_row_u" not in table.columns or t.grid_row_u.isna().any():
        ints = [parse_cell(c) for c in t.grid_cell]
        t["grid_row_u"] = [c.row for c in ints]
        t["grid_col_r"] = [c.col for c in ints]
    if t.product_id.isna().any():  # Core-DEM has no product_id: the cell is the product
        t["product_id"] = t.product_id.fillna(t.grid_cell)
    t["crs"] = t.crs.map(lambda c: c.replace("EPSG:EPSG:", "EPSG:") if isinstance(c, str) else c)
    t["timestamp"] = pd.to_datetime(t.timestamp, utc=True, format="mixed")
    return t.reset_index(drop=True)


def _like_tz(ts: pd.Timestamp, series: pd.Series) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
