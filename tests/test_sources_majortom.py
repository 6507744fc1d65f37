"""Major TOM source: the downloaded folder layout and a real parquet shard built from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio

from geocopgen.errors import DataSourceError
from geocopgen.io import open_raster
from geocopgen.sources import MajorTOM, common_cells
from geocopgen.sources.majortom_grid import get_grid

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
ROOT = DATA / "majortom"
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def _product(cell: str, root: Path = ROOT) -> Path:
    return next((root / "Core-S2L2A").glob(f"*/{cell}/*"))


def assert_same_modality_array(a, b) -> None:
    """Same georeference, bands, offset and values, NaN positions included (exactly)."""
    assert a.rio.crs == b.rio.crs
    assert a.rio.transform() == b.rio.transform()
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert list(a.band.values) == list(b.band.values)
    assert a.attrs["s2_offset"] == b.attrs["s2_offset"]
    va, vb = a.values, b.values
    np.testing.assert_array_equal(np.isnan(va), np.isnan(vb))
    np.testing.assert_array_equal(va, vb)


def _write_shard(products: list[Path], shard: Path, corrupt_last: bool = False) -> list[dict]:
    """A shard in the official layout (one product per row group, GeoTIFF bytes per band);
    returns the metadata rows. ``corrupt_last``: the last product's bands are truncated."""
    schema = pa.schema(
        [("product_id", pa.string()), ("grid_cell", pa.string()), ("product_datetime", pa.string())]
        + [(b, pa.binary()) for b in [*BANDS, "cloud_mask"]]
    )
    meta = []
    with pq.ParquetWriter(shard, schema) as writer:
        for i, product in enumerate(products):
            corrupt = corrupt_last and i == len(products) - 1
            row = {
                "product_id": product.name + ("_CORRUPT" if corrupt else ""),
                "grid_cell": product.parent.name,
                "product_datetime": product.name.split("_")[2],
            }
            for b in [*BANDS, "cloud_mask"]:
                raw = (product / f"{b}.tif").read_bytes()
                row[b] = raw[: len(raw) // 3] if corrupt else raw  # truncated GeoTIFF
            writer.write_table(pa.Table.from_pylist([row], schema=schema))
            with rasterio.open(product / "B02.tif") as src:
                crs = "EPSG:" + src.crs.to_string()  # the official metadata's EPSG:EPSG: typo
                nodata = float((src.read(1) == 0).mean())
            meta.append(
                {
                    "grid_cell": product.parent.name,
                    "product_id": row["product_id"],
                    "timestamp": pd.Timestamp(row["product_datetime"]).strftime(
                        "%Y-%m-%d %H:%M:%S"
                    ),
                    "cloud_cover": _cloud_cover(product),
                    "nodata": nodata,
                    "crs": crs,
                    "parquet_url": "https://huggingface.co/datasets/Major-TOM/Core-S2L2A/resolve/"
                    f"main/images/{shard.name}",
                    "parquet_row": i,
                }
            )
    return meta


def _cloud_cover(product: Path) -> float:
    with rasterio.open(product / "cloud_mask.tif") as src:
        return float((src.read(1) > 0).mean() * 100)


@pytest.fixture(scope="module")
def parquet_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A shard in the official layout (one product per row group, GeoTIFF bytes per band),
    plus a third, corrupt row group, and its metadata parquet."""
    out = tmp_path_factory.mktemp("majortom_parquet")
    shard = out / "images" / "part_00001.parquet"
    shard.parent.mkdir()
    products = sorted((ROOT / "Core-S2L2A").glob("*/*/*"))
    meta = _write_shard([*products, products[0]], shard, corrupt_last=True)
    metadata = out / "metadata.parquet"
    pd.DataFrame(meta).to_parquet(metadata)
    return metadata, shard.parent


def test_folder_scan_builds_the_table() -> None:
    mt = MajorTOM.from_folder(ROOT)
    assert mt.source == "Core-S2L2A" and mt.modality.name == "s2l2a"
    assert mt.cells == ["0U_199R", "199U_1099R"]
    assert list(mt.table.grid_row_u) == [0, 199] and list(mt.table.grid_col_r) == [199, 1099]
    assert mt.table.timestamp[1] == pd.Timestamp("2020-02-23T03:27:39Z")


@pytest.mark.parametrize("cell", ["0U_199R", "199U_1099R"])
def test_folder_product_is_a_georeferenced_modality_array(cell: str) -> None:
    arr = MajorTOM.from_folder(ROOT).open(cell)
    product = Path(arr.attrs["source"])
    assert arr.dims == ("band", "y", "x") and arr.dtype == np.float32
    assert arr.chunks is not None  # lazy
    assert list(arr.band.values) == BANDS
    with rasterio.open(product / "B02.tif") as src:
        assert arr.rio.crs == src.crs
        assert arr.rio.transform() == src.transform
        assert arr.shape[1:] == src.shape
        dn = src.read(1).astype(np.float64)
    offset = -1000 if cell == "0U_199R" else 0  # baseline 04.00 vs N9999 product from 2020
    assert arr.attrs["s2_offset"] == offset
    assert np.isnan(arr.rio.nodata)
    b02 = arr.sel(band="B02").values
    np.testing.assert_allclose(b02, ((dn + offset) / 10000).astype(np.float32), rtol=0, atol=1e-7)


def test_20m_bands_are_resampled_onto_the_10m_grid_without_shift() -> None:
    arr = MajorTOM.from_folder(ROOT).open("0U_199R")
    with rasterio.open(Path(arr.attrs["source"]) / "B05.tif") as src:
        b5 = (src.read(1).astype(np.float64) - 1000) / 10000
    out = arr.sel(band="B05").values
    # 10 m pixel 2i+1 has its centre 3/4 of the way from 20 m pixel i to i+1: bilinear weights.
    i = np.arange(5, 520)
    w = np.array([0.75, 0.25])
    pred = sum(w[a] * w[b] * b5[np.ix_(i + a, i + b)] for a in (0, 1) for b in (0, 1))
    np.testing.assert_allclose(out[np.ix_(2 * i + 1, 2 * i + 1)], pred, rtol=0, atol=1e-6)


def test_parquet_path_reads_the_same_pixels_as_the_folder(parquet_dataset) -> None:
    metadata, shards = parquet_dataset
    mt = MajorTOM.from_metadata(metadata, shards_dir=shards)
    assert mt.source == "Core-S2L2A"  # guessed from parquet_url
    assert mt.table.crs[0] == "EPSG:32633"  # typo fixed
    folder = MajorTOM.from_folder(ROOT)
    for cell in ("0U_199R", "199U_1099R"):
        a, b = mt.open(cell), folder.open(cell)
        # The parquet path takes its window from the grid (no header read before compute):
        # equal to the file's transform to 1e-9 m, and checked against each band when read.
        assert a.rio.crs == b.rio.crs and a.shape == b.shape
        np.testing.assert_allclose(a.rio.transform(), b.rio.transform(), rtol=0, atol=1e-6)
        assert a.attrs["s2_offset"] == b.attrs["s2_offset"]
        assert list(a.band.values) == list(b.band.values) == BANDS
        np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
        np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("cell", ["0U_199R", "199U_1099R"])
def test_folder_source_reads_exactly_what_open_raster_reads(cell: str) -> None:
    """One reading path: the Major TOM folder source and ``open_raster(<product folder>)``."""
    product = _product(cell)
    assert_same_modality_array(MajorTOM.from_folder(ROOT).open(cell), open_raster(product))


@pytest.fixture(scope="module")
def product_with_nodata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0U_199R product with DN 0 (nodata) blocks in a 10 m, a 20 m and a 60 m band, in a
    Major TOM folder of its own."""
    src = _product("0U_199R")
    root = tmp_path_factory.mktemp("majortom_nodata")
    dest = root / "Core-S2L2A" / src.relative_to(src.parents[2])
    dest.mkdir(parents=True)
    for f in src.glob("*.tif"):
        with rasterio.open(f) as ds:
            profile, data = ds.profile, ds.read()
        scale = 10 / ds.res[0]  # zero the same ground area in every band that has one
        if f.stem in ("B02", "B05", "B09"):
            data[:, : int(300 * scale), int(500 * scale) : int(800 * scale)] = 0
            data[:, int(1000 * scale) :, : int(40 * scale)] = 0
        with rasterio.open(dest / f.name, "w", **profile) as out:
            out.write(data)
    return dest


def test_folder_and_parquet_sources_agree_with_open_raster_on_nodata(
    product_with_nodata: Path, tmp_path: Path
) -> None:
    """Nodata (DN 0) becomes NaN at the same pixels, through the 20/60 m bilinear too."""
    reference = open_raster(product_with_nodata)
    nan = np.isnan(reference.values)
    assert nan[1].sum() == 300 * 300 + 68 * 40 and nan[4].any() and nan[9].any()
    folder = MajorTOM.from_folder(product_with_nodata.parents[3]).open("0U_199R")
    assert_same_modality_array(folder, reference)
    shard = tmp_path / "part_00007.parquet"
    meta = _write_shard([product_with_nodata], shard)
    parquet = MajorTOM.from_metadata(pd.DataFrame(meta), shards_dir=tmp_path).open(0)
    assert parquet.rio.crs == reference.rio.crs and parquet.shape == reference.shape
    np.testing.assert_allclose(
        parquet.rio.transform(), reference.rio.transform(), rtol=0, atol=1e-6
    )
    va, vb = parquet.values, reference.values
    np.testing.assert_array_equal(np.isnan(va), np.isnan(vb))
    np.testing.assert_array_equal(va, vb)


def test_parquet_array_pickles_and_reads_in_another_process_state(parquet_dataset) -> None:
    """dask.distributed ships the lazy array by pickling: the copy fetches its own bytes."""
    import pickle

    metadata, shards = parquet_dataset
    arr = MajorTOM.from_metadata(metadata, shards_dir=shards).open("199U_1099R")
    window = {"y": slice(500, 628), "x": slice(100, 228)}
    expected = arr.isel(**window).values
    again = pickle.loads(pickle.dumps(arr))
    np.testing.assert_array_equal(again.isel(**window).values, expected)


def test_band_not_matching_the_parquet_grid_is_a_named_error(parquet_dataset) -> None:
    """Row group 0 holds 0U_199R; metadata claiming it is 199U_1099R (another UTM zone) fails
    the band check when read, naming the band."""
    metadata, shards = parquet_dataset
    table = pd.read_parquet(metadata)
    wrong = table.iloc[[0]].assign(grid_cell="199U_1099R", crs="EPSG:32633")
    arr = MajorTOM.from_metadata(wrong, shards_dir=shards).open(0)
    with pytest.raises(DataSourceError, match=r"199U_1099R/.*/B01: bounds .* do not match"):
        arr.compute()
    moved = table.iloc[[0]].assign(crs="EPSG:32632")
    with pytest.raises(DataSourceError, match=r"B01: CRS .* differs from the product CRS"):
        MajorTOM.from_metadata(moved, shards_dir=shards).open(0).compute()


def test_row_group_without_a_band_is_a_named_error(tmp_path: Path) -> None:
    product = _product("199U_1099R")
    table = pa.table(
        {"product_id": [product.name]}
        | {b: [(product / f"{b}.tif").read_bytes()] for b in BANDS if b != "B8A"}
    )
    pq.write_table(table, tmp_path / "part_00002.parquet")
    with rasterio.open(product / "B02.tif") as src:
        crs = src.crs.to_string()
    meta = pd.DataFrame(
        [
            {
                "grid_cell": product.parent.name,
                "product_id": product.name,
                "timestamp": "2020-02-23 03:27:39",
                "crs": crs,
                "parquet_url": "https://example.org/Major-TOM/Core-S2L2A/part_00002.parquet",
                "parquet_row": 0,
            }
        ]
    )
    arr = MajorTOM.from_metadata(meta, shards_dir=tmp_path).open(0)
    with pytest.raises(DataSourceError, match="row group 0 has no B8A; the product is incomplete"):
        arr.compute()


def test_corrupt_row_group_fails_only_when_read(parquet_dataset) -> None:
    metadata, shards = parquet_dataset
    mt = MajorTOM.from_metadata(metadata, shards_dir=shards)
    arr = mt.open(2)  # lazy: nothing read yet, so no error
    with pytest.raises(DataSourceError, match="_CORRUPT/B01"):
        arr.compute()


def test_missing_shard_is_a_named_error(parquet_dataset, tmp_path: Path) -> None:
    metadata, _ = parquet_dataset
    arr = MajorTOM.from_metadata(metadata, shards_dir=tmp_path).open(0)
    with pytest.raises(DataSourceError, match="cannot read row group 0"):
        arr.compute()


def test_filters(parquet_dataset) -> None:
    metadata, shards = parquet_dataset
    mt = MajorTOM.from_metadata(metadata, shards_dir=shards)
    assert len(mt) == 3
    assert mt.filter(cells=["0U_199R"]).cells == ["0U_199R"]
    assert len(mt.filter(cells="0U_199R")) == 2
    lat, lon = get_grid().corner("199U_1099R")
    assert mt.filter(area=(lon + 0.01, lat + 0.01, lon + 0.02, lat + 0.02)).cells == ["199U_1099R"]
    assert mt.filter(dates=("2022-01-01", None)).cells == ["0U_199R"]
    assert mt.filter(dates=(None, "2021-01-01")).cells == ["199U_1099R"]
    clouds = mt.table.cloud_cover.to_numpy()
    low = float(np.min(clouds))
    assert len(mt.filter(cloud_cover=(0, low))) == int((clouds <= low).sum())
    assert len(mt.filter(nodata=(0.0, 0.0))) == int((mt.table.nodata == 0).sum())
    assert len(mt.latest()) == 2
    folder = MajorTOM.from_folder(ROOT)
    assert len(folder.filter(cloud_cover=(0, 100))) == 0  # a scanned folder has no cloud column
    assert common_cells(mt, folder) == ["0U_199R", "199U_1099R"]


def test_bad_inputs_are_named_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no products found"):
        MajorTOM.from_folder(tmp_path, source="Core-S2L2A")
    with pytest.raises(DataSourceError, match="unknown Major TOM source"):
        MajorTOM.from_folder(ROOT, source="Core-S3")
    with pytest.raises(DataSourceError, match="cannot read the Major TOM metadata"):
        MajorTOM.from_metadata(tmp_path / "nope.parquet", source="Core-S2L2A")
    with pytest.raises(DataSourceError, match="no product for cell 5U_5R"):
        MajorTOM.from_folder(ROOT).open("5U_5R")
