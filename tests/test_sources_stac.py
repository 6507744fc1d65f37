"""STAC source against a real STAC API served on loopback, items pointing at the shared rasters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from geocopgen.errors import DataSourceError
from geocopgen.sources import MajorTOM
from geocopgen.sources.stac import PRESETS, StacSource, geobox_for_cell

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
PRODUCTS = sorted((DATA / "majortom" / "Core-S2L2A").glob("*/*/*"))
DEM_TILE = DATA / "terramind" / "DEM" / "38D_378R_2_3.tif"
S2_ASSETS = PRESETS["earth-search"]["s2l2a"].assets


def _asset(path: Path) -> dict:
    with rasterio.open(path) as src:
        return {
            "href": str(path),
            "type": "image/tiff; application=geotiff",
            "roles": ["data"],
            "proj:code": src.crs.to_string(),
            "proj:shape": list(src.shape),
            "proj:transform": list(src.transform)[:6],
        }


def _bbox(path: Path) -> list[float]:
    with rasterio.open(path) as src:
        to_ll = Transformer.from_crs(src.crs, 4326, always_xy=True)
        b = src.bounds
        xs, ys = to_ll.transform(
            [b.left, b.right, b.left, b.right], [b.bottom, b.bottom, b.top, b.top]
        )
        return [min(xs), min(ys), max(xs), max(ys)]


def _item(item_id: str, collection: str, bbox: list[float], when: str, props: dict, assets: dict):
    w, s, e, n = bbox
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "id": item_id,
        "collection": collection,
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": when, **props},
        "assets": assets,
        "links": [],
    }


def _catalog() -> list[dict]:
    items = []
    for product, cloud in zip(PRODUCTS, (12.0, 55.0), strict=True):
        stamp = datetime.strptime(product.name.split("_")[2], "%Y%m%dT%H%M%S")
        assets = {S2_ASSETS[b]: _asset(product / f"{b}.tif") for b in S2_ASSETS}
        props = {
            "eo:cloud_cover": cloud,
            "s2:processing_baseline": product.name.split("_")[3][1:3]
            + "."
            + product.name.split("_")[3][3:],
            "s2:product_uri": product.name + ".SAFE",
            "grid:code": product.parent.name,
        }
        bbox = _bbox(product / "B02.tif")
        items.append(
            _item(product.name, "sentinel-2-l2a", bbox, stamp.isoformat() + "Z", props, assets)
        )
    broken = json.loads(json.dumps(items[0]))
    broken["id"] = "missing-swir22"
    broken["properties"]["datetime"] = "2019-05-05T10:00:00Z"
    del broken["assets"]["swir22"]
    items.append(broken)
    dem_props = {"gsd": 10}
    items.append(
        _item(
            "dem-38D_378R",
            "cop-dem-glo-30",
            _bbox(DEM_TILE),
            "2021-04-22T00:00:00Z",
            dem_props,
            {"data": _asset(DEM_TILE)},
        )
    )
    return items


class _StacHandler(BaseHTTPRequestHandler):
    items: ClassVar[list[dict]] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @property
    def base(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/")
        if path == "":
            self._send(self._landing())
        elif path == "/conformance":
            self._send({"conformsTo": self._landing()["conformsTo"]})
        elif path == "/collections":
            self._send(
                {"collections": [self._collection(c) for c in self._collection_ids()], "links": []}
            )
        elif path.startswith("/collections/") and path.endswith("/items"):
            cid = path.split("/")[2]
            self._send(self._search({"collections": [cid]}))
        elif path.startswith("/collections/"):
            self._send(self._collection(path.split("/")[2]))
        elif path == "/search":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            params: dict = {}
            if "collections" in q:
                params["collections"] = q["collections"].split(",")
            if "bbox" in q:
                params["bbox"] = [float(v) for v in q["bbox"].split(",")]
            for key in ("datetime", "limit"):
                if key in q:
                    params[key] = q[key]
            self._send(self._search(params))
        else:
            self._send({"code": "NotFound", "description": self.path}, 404)

    def do_POST(self) -> None:
        if urlparse(self.path).path.rstrip("/") != "/search":
            self._send({"code": "NotFound"}, 404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self._send(self._search(body))

    def _landing(self) -> dict:
        b = self.base
        return {
            "type": "Catalog",
            "id": "loopback",
            "stac_version": "1.0.0",
            "description": "geocopgen test STAC API",
            "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0/collections",
                "https://api.stacspec.org/v1.0.0/ogcapi-features",
            ],
            "links": [
                {"rel": "self", "href": b + "/", "type": "application/json"},
                {"rel": "root", "href": b + "/", "type": "application/json"},
                {"rel": "conformance", "href": b + "/conformance"},
                {"rel": "data", "href": b + "/collections", "type": "application/json"},
                {
                    "rel": "search",
                    "href": b + "/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {
                    "rel": "search",
                    "href": b + "/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def _collection_ids(self) -> list[str]:
        return sorted({i["collection"] for i in self.items})

    def _collection(self, cid: str) -> dict:
        return {
            "type": "Collection",
            "id": cid,
            "stac_version": "1.0.0",
            "description": cid,
            "license": "CC-BY-SA-4.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]},
            },
            "links": [{"rel": "items", "href": f"{self.base}/collections/{cid}/items"}],
        }

    def _search(self, params: dict) -> dict:
        hits = list(self.items)
        if params.get("collections"):
            hits = [i for i in hits if i["collection"] in params["collections"]]
        if params.get("ids"):
            hits = [i for i in hits if i["id"] in params["ids"]]
        if params.get("bbox"):
            w, s, e, n = params["bbox"]
            hits = [
                i
                for i in hits
                if not (
                    i["bbox"][0] > e or i["bbox"][2] < w or i["bbox"][1] > n or i["bbox"][3] < s
                )
            ]
        if params.get("datetime"):
            parts = str(params["datetime"]).split("/")
            lo = parts[0] if parts[0] not in ("", "..") else "0000"
            hi = parts[-1] if parts[-1] not in ("", "..") else "9999"
            hits = [i for i in hits if lo[:19] <= i["properties"]["datetime"][:19] <= hi[:19] + "Z"]
        return {
            "type": "FeatureCollection",
            "features": hits,
            "links": [],
            "numberReturned": len(hits),
        }


def serve(items: list[dict]) -> Iterator[str]:
    """A STAC API on loopback serving ``items``; yields its URL (for a fixture to wrap)."""
    handler = type("Handler", (_StacHandler,), {"items": items})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stac_url() -> Iterator[str]:
    yield from serve(_catalog())


@pytest.fixture(scope="module")
def source(stac_url: str) -> StacSource:
    return StacSource(stac_url, preset="earth-search")


def _ll_box(cell_product: Path, pad: float = 0.01) -> list[float]:
    w, s, e, n = _bbox(cell_product / "B02.tif")
    cx, cy = (w + e) / 2, (s + n) / 2
    return [cx - pad, cy - pad, cx + pad, cy + pad]


def test_search_over_http_by_bbox_datetime_and_cloud(source: StacSource) -> None:
    items = source.search("s2l2a", bbox=_ll_box(PRODUCTS[0]))
    assert {i.id for i in items} == {PRODUCTS[0].name, "missing-swir22"}
    items = source.search("s2l2a", bbox=_ll_box(PRODUCTS[0]), datetime="2022-01-01/2023-01-01")
    assert [i.id for i in items] == [PRODUCTS[0].name]
    everything = source.search("s2l2a", datetime="2020-01-01/2023-01-01")
    assert {i.id for i in everything} == {p.name for p in PRODUCTS}
    low = source.search("s2l2a", datetime="2020-01-01/2023-01-01", cloud_cover=(0, 20))
    assert [i.id for i in low] == [PRODUCTS[0].name]


def test_no_results_is_a_named_error(source: StacSource) -> None:
    with pytest.raises(DataSourceError, match="no sentinel-2-l2a items"):
        source.search("s2l2a", bbox=[-60.0, -30.0, -59.9, -29.9])


def test_missing_band_asset_is_a_named_error(source: StacSource) -> None:
    items = source.search("s2l2a", bbox=_ll_box(PRODUCTS[0]), datetime="2019-01-01/2019-12-31")
    with pytest.raises(DataSourceError, match=r"missing-swir22: no asset swir22 for band\(s\) B12"):
        source.load(items, "s2l2a")


def test_native_grid_load_is_pixel_exact(source: StacSource) -> None:
    product = PRODUCTS[0]
    items = source.search("s2l2a", bbox=_ll_box(product), datetime="2022-01-01/2023-01-01")
    (arr,) = source.load(items, "s2l2a")
    assert arr.dims == ("band", "y", "x") and arr.dtype == np.float32 and arr.chunks
    assert list(arr.band.values) == list(S2_ASSETS)
    assert arr.attrs["s2_offset"] == -1000 and arr.attrs["items"] == product.name
    with rasterio.open(product / "B02.tif") as src:
        assert arr.rio.crs == src.crs
        assert arr.rio.transform() == src.transform
        assert arr.shape[1:] == src.shape
        dn = src.read(1).astype(np.float64)
    np.testing.assert_allclose(arr.sel(band="B02").values, (dn - 1000) / 10000, rtol=0, atol=1e-7)
    # 20 m and 60 m bands: the same bilinear, same grid as the Major TOM folder reader.
    folder = MajorTOM.from_folder(DATA / "majortom").open(product.parent.name)
    for band in ("B05", "B01"):
        np.testing.assert_allclose(
            arr.sel(band=band).values, folder.sel(band=band).values, rtol=0, atol=1e-6
        )


def test_load_at_20m_reads_20m_band_without_resampling(source: StacSource) -> None:
    product = PRODUCTS[1]
    items = source.search("s2l2a", bbox=_ll_box(product))
    (arr,) = source.load(items, "s2l2a", resolution=20.0)
    with rasterio.open(product / "B05.tif") as src:
        assert arr.rio.transform() == src.transform
        np.testing.assert_allclose(
            arr.sel(band="B05").values, src.read(1) / 10000, rtol=0, atol=1e-7
        )
    assert arr.attrs["s2_offset"] == 0  # N9999 product acquired 2020: no offset


def test_load_onto_a_major_tom_cell_grid(source: StacSource) -> None:
    product = PRODUCTS[1]
    items = source.search("s2l2a", bbox=_ll_box(product))
    gb = geobox_for_cell(product.parent.name, crs="EPSG:32648")
    (arr,) = source.load(items, "s2l2a", geobox=gb)
    assert arr.shape == (12, 1068, 1068)
    np.testing.assert_allclose(tuple(arr.rio.transform()), tuple(gb.affine), rtol=0, atol=0)
    with rasterio.open(product / "B03.tif") as src:
        ref = src.read(1) / 10000
    # The cell grid equals the product grid to 1e-10 m, so B03 is read unresampled.
    np.testing.assert_allclose(arr.sel(band="B03").values, ref, rtol=0, atol=1e-6)


def test_dem_collection_and_like(source: StacSource) -> None:
    items = source.search("dem", bbox=_bbox(DEM_TILE))
    (dem,) = source.load(items, "dem")
    with rasterio.open(DEM_TILE) as src:
        assert dem.rio.transform() == src.transform
        np.testing.assert_array_equal(dem.values[0], src.read(1).astype(np.float32))
    (again,) = source.load(items, "dem", like=dem)
    np.testing.assert_array_equal(again.values, dem.values)
    assert dem.attrs["modality"] == "dem" and dem.attrs["units"] == "m"


def test_presets_and_unknown_names() -> None:
    assert PRESETS["planetary-computer"]["s1rtc"].assets == {"VV": "vv", "VH": "vh"}
    assert PRESETS["earth-search"]["s2l1c"].assets["B10"] == "cirrus"
    assert StacSource("earth-search").url.startswith("https://earth-search")
    with pytest.raises(DataSourceError, match="unknown STAC preset"):
        StacSource("http://127.0.0.1:1", preset="nope")
    with pytest.raises(DataSourceError, match="no collection preset for Sentinel-1 RTC"):
        StacSource("earth-search").preset_for("s1rtc")
