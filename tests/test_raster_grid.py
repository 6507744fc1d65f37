"""The grid value (odc-geo GeoBox) and geocopgen's grid rules, on real rasters, compared exactly:
CRS, affine and shape equal bit for bit unless a test says otherwise."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import rasterio
from affine import Affine
from conftest import DATA, VIRGINIA, terramind
from odc.geo.geobox import GeoBox
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geocopgen.errors import GridError, MissingCRSError, TransformError
from geocopgen.io import open_raster
from geocopgen.latents.store import ChipRecord
from geocopgen.raster.chips import ChipGrid
from geocopgen.raster.grid import (
    almost_equal,
    at_resolution,
    describe,
    grid_of,
    grid_profile,
    make_grid,
    pixel_size,
    rasterio_crs,
    sub_grid,
    validate_grid,
    xy_coords,
)
from geocopgen.sources.majortom_grid import product_grid, product_transform

RASTERS = sorted(p for p in DATA.rglob("*.tif") if "majortom" not in p.parts)
MAJORTOM = sorted((DATA / "majortom" / "Core-S2L2A").glob("*/*/*"))
SCENE = terramind("S2L2A")  # 224 x 224 px at 10 m


def _grid(path: Path) -> GeoBox:
    with rasterio.open(path) as src:
        return grid_of(src)


# --- the value and its rasterio boundary -------------------------------------------------------
@pytest.mark.parametrize("path", RASTERS, ids=lambda p: p.name)
def test_the_grid_of_a_file_is_its_header_and_its_crs_goes_back_to_rasterio_unchanged(path):
    with rasterio.open(path) as src:
        if src.crs is None:
            pytest.skip("no CRS (tested in test_bad_input)")
        grid = grid_of(src)
        assert grid.crs == src.crs and grid.affine == src.transform
        assert (grid.width, grid.height) == (src.width, src.height)
        back = rasterio_crs(grid)
        assert back == src.crs and back.to_wkt() == src.crs.to_wkt()  # custom WKT included
        assert back.to_string() == src.crs.to_string()
        assert grid_profile(grid) == {
            "crs": src.crs,
            "transform": src.transform,
            "width": src.width,
            "height": src.height,
        }
        assert grid.boundingbox.bbox == tuple(src.bounds)
        assert pixel_size(grid) == src.res


def test_a_modality_array_carries_the_same_grid_as_its_file():
    array = open_raster(VIRGINIA)
    grid = grid_of(array)
    with rasterio.open(next(VIRGINIA.glob("*B02*"))) as src:
        assert grid == grid_of(src)
    x, y = xy_coords(grid)
    assert (array.x.values == x).all() and (array.y.values == y).all()
    assert describe(grid) == f"{src.width}x{src.height} px at 10 x 10 in {src.crs.to_string()}"


def test_validation_names_the_problem():
    t = Affine(10, 0, 500000, 0, -10, 4200000)
    with pytest.raises(MissingCRSError, match="has no coordinate reference system"):
        validate_grid(make_grid(CRS(), t, 4, 4), "x.tif")
    with pytest.raises(TransformError, match="rotated or sheared"):
        validate_grid(make_grid("EPSG:32633", Affine(10, 1, 0, 0, -10, 0), 4, 4), "x.tif")
    with pytest.raises(TransformError, match="no usable north-up geotransform"):
        validate_grid(make_grid("EPSG:32633", Affine(10, 0, 0, 0, 10, 0), 4, 4), "x.tif")
    with pytest.raises(GridError, match=r"x.tif has an empty grid \(0x4 px\)"):
        validate_grid(make_grid("EPSG:32633", t, 0, 4), "x.tif")


# --- sub-grids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [SCENE, *sorted(VIRGINIA.glob("*B0[28]*"))], ids=lambda p: p.name)
def test_the_sub_grid_of_a_window_is_rasterios_window_transform(path):
    rng = random.Random(13)
    with rasterio.open(path) as src:
        grid = grid_of(src)
        for _ in range(300):
            r0, c0 = rng.randrange(src.height), rng.randrange(src.width)
            h, w = rng.randrange(1, src.height - r0 + 1), rng.randrange(1, src.width - c0 + 1)
            window = Window(c0, r0, w, h)
            expected = GeoBox((h, w), window_transform(window, src.transform), src.crs)
            assert grid[r0 : r0 + h, c0 : c0 + w] == expected == sub_grid(grid, window)


def test_a_chip_grid_is_a_window_sub_grid_of_its_scene():
    scene = grid_of(open_raster(VIRGINIA))
    chips = ChipGrid.from_grid(scene, chip_size=256, overlap=32)
    for chip in chips:
        rows, cols = chip.slices
        assert chips.grid_of(chip) == scene[rows, cols]
        assert chips.grid_of(chip).affine == chip.transform  # the chip arithmetic agrees
    with pytest.raises(GridError, match="from_grid"):
        ChipGrid(100, 100).grid_of(next(iter(ChipGrid(100, 100, chip_size=64))))


def test_a_latent_store_record_keeps_its_chip_grid():
    scene = _grid(SCENE)
    chip = scene[32:160, 64:192]
    record = ChipRecord.for_grid("place", 32, 64, chip, datetime="2020-01-01")
    assert record.crs == rasterio_crs(scene).to_string()
    assert record.transform == tuple(chip.affine)[:6]
    assert (record.height, record.width) == (128, 128)
    assert record.grid == chip


# --- derived grids: one rule, exact alignment --------------------------------------------------
@pytest.mark.parametrize("factor", [2, 3, 6, 8], ids=["20m", "30m", "60m", "latent80m"])
@pytest.mark.parametrize("path", [SCENE, next(VIRGINIA.glob("*B02*"))], ids=["tile", "crop"])
def test_coarser_grids_share_the_scene_origin_and_its_pixel_edges(path, factor):
    scene = _grid(path)
    res = 10.0 * factor
    coarse = at_resolution(scene, res)
    assert pixel_size(scene) == (10.0, 10.0) and pixel_size(coarse) == (res, res)
    assert coarse.crs == scene.crs
    assert (coarse.affine.c, coarse.affine.f) == (scene.affine.c, scene.affine.f)
    # every coarse pixel edge is a scene pixel edge, bit for bit
    for k in range(coarse.width + 1):
        assert coarse.affine @ (k, 0) == scene.affine @ (k * factor, 0)
    for k in range(coarse.height + 1):
        assert coarse.affine @ (0, k) == scene.affine @ (0, k * factor)
    # it covers every scene pixel, by less than one coarse pixel more
    assert coarse.width == math.ceil(scene.width / factor)
    assert coarse.height == math.ceil(scene.height / factor)
    # odc-geo's zoom_to agrees on these grids (the difference is in the rounding tolerance)
    assert coarse == scene.zoom_to(resolution=res)


def test_at_resolution_keeps_a_partial_last_pixel_that_zoom_to_drops():
    scene = GeoBox((1001, 1001), Affine(10, 0, 500000, 0, -10, 4200000), "EPSG:32633")
    assert at_resolution(scene, 1000).shape == (11, 11)
    assert scene.zoom_to(resolution=1000).shape == (10, 10)
    with pytest.raises(GridError, match="resolution must be positive"):
        at_resolution(scene, 0)


def test_the_latent_canvas_is_the_scene_grid_at_eight_times_the_pixel_size():
    from geocopgen.translation.canvas import CanvasLayout

    scene = grid_of(open_raster(VIRGINIA))
    layout = CanvasLayout.for_grid(scene, factor=8, chip=32)
    assert layout.latent_grid == at_resolution(scene, 80.0)
    assert layout.latent_chips.grid == layout.latent_grid


@pytest.mark.parametrize("product", MAJORTOM, ids=lambda p: p.parent.name)
def test_a_major_tom_cell_gives_its_product_grid_and_the_coarser_ones_derive_from_it(product):
    cell = product.parent.name
    with rasterio.open(product / "B02.tif") as src:
        ten = product_grid(cell, crs=src.crs)
        assert almost_equal(ten, grid_of(src))  # the product's header, to a millionth of a px
        assert (ten.affine, ten.width, ten.height) == product_transform(cell, crs=src.crs)
    for band, res in (("B05", 20.0), ("B01", 60.0)):
        coarse = product_grid(cell, crs=src.crs, resolution=res)
        assert coarse == at_resolution(ten, res)
        with rasterio.open(product / f"{band}.tif") as band_src:
            assert almost_equal(coarse, grid_of(band_src))
    assert product_grid(cell, crs=src.crs, resolution=30.0) == at_resolution(ten, 30.0)  # DEM


def test_almost_equal_tolerates_float_noise_only():
    scene = _grid(SCENE)
    t = scene.affine
    noisy = GeoBox(scene.shape, Affine(t.a, 0, t.c + 1e-10, 0, t.e, t.f), scene.crs)
    moved = GeoBox(scene.shape, Affine(t.a, 0, t.c + 1e-3, 0, t.e, t.f), scene.crs)
    assert noisy != scene and almost_equal(noisy, scene) and not almost_equal(moved, scene)
    assert not almost_equal(scene[:10, :10], scene)
