"""What a new user hit with inputs (issue 27): negative Sentinel-2 DNs, rasters too small to
translate, BigEarthNet and SSL4EO-S12 names, conditions on another grid, URLs, the antimeridian."""

from __future__ import annotations

import http.server
import json
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _translate_fixtures import save_tiny
from affine import Affine
from conftest import MAJORTOM_0U, PLACE, TERRAMIND, terramind, write_variant
from rasterio.windows import Window
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import GeoCopGenWarning, OffsetWarning, ResamplingWarning
from geocopgen.io import open_raster, plan_input

runner = CliRunner()
STEPS = ["--steps", "1", "--device", "cpu"]


def cli(*args: object):
    return runner.invoke(app, ["-q", *map(str, args)])


def crop(src_path: Path, dst_path: Path, size: int) -> Path:
    """A ``size`` x ``size`` px window of a real raster, georeferenced where it was."""
    window = Window(100, 100, size, size)
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "width": size, "height": size, "tiled": False,
                   "transform": src.window_transform(window)}  # fmt: skip
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


# --- row 8: negative digital numbers ------------------------------------------------------------
def test_negative_s2_dns_are_nodata_and_counted(tmp_path):
    def spoil(values: np.ndarray) -> np.ndarray:
        values = values.copy()
        values[0, :10, :10] = -500  # B01, 100 px
        return values

    src = write_variant(terramind("S2L2A"), tmp_path / "s2_negative.tif", data=spoil)
    with pytest.warns(GeoCopGenWarning, match=r"s2_negative\.tif: 100 of its pixel values") as w:
        array = open_raster(src)
    assert "negative digital numbers (down to -500)" in str(w[0].message)
    values = array.values
    assert np.isnan(values[0, :10, :10]).all()
    assert np.isfinite(values[0, 10:, 10:]).all() and np.isfinite(values[1:, :10, :10]).all()


def test_the_real_tile_has_no_negative_dn_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeoCopGenWarning)
        open_raster(terramind("S2L2A"))


# --- row 9: too small to translate ---------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 5])
def test_a_raster_smaller_than_one_coarse_pixel_is_too_small(tmp_path, size):
    src = crop(terramind("S2L2A"), tmp_path / f"s2_{size}px.tif", size)
    result = cli("translate", src, "--to", "dem", "-o", tmp_path / "dem.tif", *STEPS)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"Error: {src}: too small ({size}x{size} px); translating Sentinel-2 L2A needs at least "
        "6x6 px (one 60 m pixel of its S2L2A_B01_B09 group). Give a larger area."
    ]
    assert not (tmp_path / "dem.tif").exists()


def test_six_pixels_a_side_are_enough(tmp_path):
    src = crop(terramind("S2L2A"), tmp_path / "s2_6px.tif", 6)
    result = cli("translate", src, "--to", "dem", "-o", tmp_path / "dem.tif", *STEPS)
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "dem.tif") as out, rasterio.open(src) as inp:
        assert (out.crs, out.transform, out.shape) == (inp.crs, inp.transform, inp.shape)


# --- row 10: dates in BigEarthNet and SSL4EO-S12 names ------------------------------------------
BEN_PATCH = "S2B_MSIL2A_20180204T094029_N9999_R036_T34VER_00_77"
SSL4EO_ID = "20200405T101021_20200405T101022_T33UUP"


def _band_folder(folder: Path, prefix: str = "") -> Path:
    """The Major TOM cell's twelve L2A band files, linked in ``folder`` as ``<prefix>B02.tif``."""
    folder.mkdir(parents=True)
    for band in sorted(MAJORTOM_0U.glob("B*.tif")):
        (folder / f"{prefix}{band.name}").symlink_to(band)
    return folder


@pytest.mark.parametrize(
    "layout, when",
    [
        (f"BigEarthNet-S2/S2B_MSIL2A_20180204T094029_N9999_R036_T34VER/{BEN_PATCH}/{BEN_PATCH}_",
         "2018-02-04T09:40:29"),
        (f"renamed/patch_77/{BEN_PATCH}_", "2018-02-04T09:40:29"),
        (f"ssl4eo-s12/s2a/0000001/{SSL4EO_ID}/", "2020-04-05T10:10:21"),
    ],
    ids=["bigearthnet", "bigearthnet-renamed-folder", "ssl4eo-s12"],
)  # fmt: skip
def test_dates_are_read_from_bigearthnet_and_ssl4eo_names(tmp_path, layout, when):
    folder_part, prefix = layout.rsplit("/", 1)
    folder = _band_folder(tmp_path / folder_part, prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OffsetWarning)  # the date decides the offset
        plan = plan_input(folder)
    assert plan.datetime == when
    assert plan.decoding.offset == 0  # both acquired before the 2022-01-25 offset
    assert (
        plan.evidence["s2_offset"]
        == f"acquisition date {when[:10].replace('-', '')} in the product id"
    )


# --- row 11: a condition on another grid --------------------------------------------------------
def test_a_condition_off_the_scene_grid_is_announced(tmp_path):
    s1 = terramind("S1RTC")
    with rasterio.open(s1) as src:
        t = src.transform
    shifted = write_variant(s1, tmp_path / "s1_shifted.tif",
                            transform=Affine(t.a, 0, t.c + 5, 0, t.e, t.f - 5))  # fmt: skip
    args = ["translate", terramind("S2L2A"), "--to", "dem", *STEPS]
    result = cli(*args, "--cond", f"s1rtc={shifted}", "-o", tmp_path / "a.tif")
    assert result.exit_code == 0, result.output
    assert f"geocopgen: warning: {shifted}: on another grid than the scene" in result.stderr
    assert "reprojected onto each resolution group's grid" in result.stderr
    aligned = cli(*args, "--cond", f"s1rtc={s1}", "-o", tmp_path / "b.tif")
    assert aligned.exit_code == 0, aligned.output
    assert "on another grid" not in aligned.stderr


# --- row 5: URLs and GDAL virtual paths --------------------------------------------------------
class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``root`` over HTTP with byte ranges, as object stores serve COGs."""

    root: Path
    ranges: list[str]

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = (self.root / self.path.split("?")[0].lstrip("/")).resolve()
        if not path.is_file() or self.root not in path.parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if asked:
            self.ranges.append(asked.group(0))
            start, status = int(asked.group(1)), 206
            end = min(int(asked.group(2) or end), len(data) - 1)
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start : end + 1])

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def served(monkeypatch) -> Iterator[tuple[str, list[str]]]:
    """The TerraMind tiles on a loopback HTTP server that answers range requests; yields its
    base URL and the ranges asked for."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    handler = type("Handler", (_RangeHandler,), {"root": TERRAMIND.resolve(), "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        with rasterio.Env(GDAL_HTTP_TIMEOUT=10, GDAL_HTTP_MAX_RETRY=0,
                          GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):  # fmt: skip
            yield f"http://127.0.0.1:{server.server_address[1]}", handler.ranges
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.mark.parametrize("prefix", ["", "/vsicurl/"], ids=["url", "vsicurl"])
def test_a_url_is_read_by_range_requests(tmp_path, served, prefix):
    base, ranges = served
    url = f"{prefix}{base}/S2L2A/{PLACE}.tif"
    info = cli("info", url, "--json")
    assert info.exit_code == 0, info.output
    facts = json.loads(info.stdout)
    assert facts["source"] == url and facts["modality"] == "s2l2a"
    out, local = tmp_path / "from_url.tif", tmp_path / "from_file.tif"
    assert cli("roundtrip", url, "-o", out).exit_code == 0
    assert cli("roundtrip", terramind("S2L2A"), "-o", local).exit_code == 0
    with rasterio.open(out) as a, rasterio.open(local) as b:
        assert (a.crs, a.transform, a.shape, a.count) == (b.crs, b.transform, b.shape, b.count)
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
    assert ranges, "GDAL should have read the file by byte ranges"


def test_translate_reads_a_url_and_a_url_condition(tmp_path, served):
    base, _ = served
    out = tmp_path / "dem.tif"
    s1 = f"/vsicurl/{base}/S1RTC/{PLACE}.tif"
    result = cli("translate", f"{base}/S2L2A/{PLACE}.tif", "--cond", f"s1rtc={s1}",
                 "--to", "dem", "-o", out, *STEPS)  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dem, rasterio.open(terramind("S2L2A")) as s2:
        assert (dem.crs, dem.transform, dem.shape) == (s2.crs, s2.transform, s2.shape)


def test_a_missing_url_is_one_line(served):
    base, _ = served
    result = cli("info", f"{base}/S2L2A/nothing.tif")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {base}/S2L2A/nothing.tif: cannot open it")


# --- row 1: across the antimeridian ------------------------------------------------------------
def _at_longitude(tmp_path: Path, west: float) -> Path:
    """The real S2 L2A tile in EPSG:4326, 224 px of 0.0001° from longitude ``west``."""
    return write_variant(terramind("S2L2A"), tmp_path / f"s2l2a_{west:g}.tif", crs="EPSG:4326",
                         transform=Affine(1e-4, 0, west, 0, -1e-4, -16.5))  # fmt: skip


def _nodata_fraction(path: Path) -> float:
    with rasterio.open(path) as src:
        return float(np.isnan(src.read(1)).mean())


def test_a_scene_across_the_antimeridian_is_translated_whole(tmp_path):
    """Columns from 179.99° to 180.0124°: translated on a UTM grid that covers the whole scene,
    with no more nodata than the same scene west of 180° (only the corners of the rotated
    footprint)."""
    across, west = _at_longitude(tmp_path, 179.99), _at_longitude(tmp_path, 179.97)
    for src in (across, west):
        result = cli("translate", src, "--to", "dem", "-o", src.with_suffix(".dem.tif"), *STEPS)
        assert result.exit_code == 0, result.output
    with rasterio.open(across.with_suffix(".dem.tif")) as dem:
        assert dem.crs.to_epsg() == 32701 and dem.shape == (253, 244)
    far, near = (_nodata_fraction(p.with_suffix(".dem.tif")) for p in (across, west))
    assert far < 0.05 and abs(far - near) < 0.01


def test_the_four_modality_path_reads_across_the_antimeridian_too(tmp_path):
    model = save_tiny(tmp_path / "tiny")
    with pytest.warns(ResamplingWarning, match="across the antimeridian"):
        dem = api.translate(_at_longitude(tmp_path, 179.99), "dem", model=model, steps=1,
                            device="cpu")  # fmt: skip
    assert dem.rio.crs.to_epsg() == 32701
    assert float(np.isnan(dem.values).mean()) < 0.05
