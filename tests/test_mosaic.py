"""Streaming mosaic writer: exact identity round trips on real rasters, native grids, COG."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import MAJORTOM_0U, VIRGINIA, leftovers, terramind

from geocopgen.errors import OffsetWarning
from geocopgen.io import open_raster
from geocopgen.io.decoding import S2_DN, Decoding
from geocopgen.modalities import get_modality
from geocopgen.raster.chips import ChipGrid
from geocopgen.raster.grid import at_resolution, grid_of, make_grid
from geocopgen.raster.mosaic import MosaicWriter, apply_chipwise, identity


def assert_same_raster(out_path, array):
    """Values (NaN = nodata), CRS, transform, shape and band names, exactly."""
    back = open_raster(out_path)
    with rasterio.open(out_path) as dst:
        assert dst.crs == array.rio.crs
        assert dst.transform == array.rio.transform()
        assert (dst.count, dst.height, dst.width) == array.shape
        assert np.isnan(dst.nodata)
        assert list(dst.descriptions) == [str(b) for b in array.band.values]
        assert dst.dtypes[0] == "float32"
        tags = dst.tags()
    expected = array.values
    got = back.values
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got, expected)
    return tags


@pytest.mark.parametrize("modality", ["S2L1C", "S2L2A", "S1RTC", "DEM"])
@pytest.mark.parametrize(("chip_size", "overlap"), [(256, 32), (128, 32), (64, 24)])
def test_identity_round_trip_terramind(tmp_path, modality, chip_size, overlap):
    """224 px tiles: one padded chip (256), or overlapping blended chips (128, 64)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)
        array = open_raster(terramind(modality))
    out = apply_chipwise(
        array, identity, tmp_path / "rt.tif", chip_size=chip_size, overlap=overlap, progress=False
    )
    tags = assert_same_raster(out, array)
    assert tags["MODALITY"] == get_modality(modality).name
    assert tags["ENCODING"] == "physical" and tags["SOURCE"] == str(terramind(modality))
    assert leftovers(tmp_path) == [out]


def test_round_trip_recovers_the_digital_numbers(tmp_path):
    path = terramind("S2L2A", "637U_59R_1_3")
    array = open_raster(path)
    out = apply_chipwise(array, identity, tmp_path / "rt.tif", chip_size=96, progress=False)
    with rasterio.open(out) as dst, rasterio.open(path) as src:
        reflectance, dn = dst.read(), src.read()
    decoding = Decoding(get_modality("s2l2a"), S2_DN, array.attrs["s2_offset"])
    np.testing.assert_array_equal(decoding.encode(reflectance, dn.dtype, 0), dn)


def test_identity_round_trip_major_tom_cell(tmp_path):
    array = open_raster(MAJORTOM_0U)
    out = apply_chipwise(array, identity, tmp_path / "cell.tif", progress=False)
    assert_same_raster(out, array)


def test_identity_round_trip_virginia_scene(tmp_path):
    """The largest scene: 81 overlapping chips, 60 m bands with missing edge rows."""
    array = open_raster(VIRGINIA)
    out = apply_chipwise(array, identity, tmp_path / "virginia.tif", progress=False)
    assert_same_raster(out, array)


def test_native_resolution_output_transform_and_values(tmp_path):
    """DEM 10 m -> native 30 m: transform by hand, values = average of 3 x 3 blocks."""
    array = open_raster(terramind("DEM"))
    grid = grid_of(array)
    native = at_resolution(grid, 30)
    t = grid.transform
    assert native.transform == Affine(30.0, 0.0, t.c, 0.0, -30.0, t.f)
    assert (native.width, native.height) == (75, 75)  # ceil(224 / 3): no remainder dropped
    out = apply_chipwise(
        array, identity, tmp_path / "dem30.tif", chip_size=128, out_grid=native, progress=False
    )
    with rasterio.open(out) as dst:
        assert dst.transform == native.transform and dst.shape == (75, 75)
        assert dst.crs == array.rio.crs
        values = dst.read(1)
        assert "average" in dst.tags()["RESAMPLED_TO"]
    src = array.values[0].astype(np.float64)
    assert values[0, 0] == pytest.approx(src[:3, :3].mean(), rel=1e-6)
    assert values[10, 20] == pytest.approx(src[30:33, 60:63].mean(), rel=1e-6)
    # the last column holds only 224 - 222 = 2 real columns: their average
    assert values[5, 74] == pytest.approx(src[15:18, 222:224].mean(), rel=1e-6)


def test_cog_output(tmp_path):
    array = open_raster(MAJORTOM_0U).isel(band=[1, 2, 3])
    out = apply_chipwise(array, identity, tmp_path / "cog.tif", cog=True, progress=False)
    with rasterio.open(out) as dst:
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dst.overviews(1)
        assert dst.transform == array.rio.transform()
        np.testing.assert_array_equal(dst.read(), array.values)
    assert leftovers(tmp_path) == [out]


def test_writer_is_order_independent_and_streams(tmp_path):
    """Chips added in any order give the same file; row-major order frees tiles early."""
    h, w = 1500, 2000
    grid = make_grid(rasterio.crs.CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), w, h)
    chips = ChipGrid.from_grid(grid)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, h, w)).astype(np.float32)

    def write(path, order, **kwargs):
        with MosaicWriter(path, grid, ["a", "b"], chips=chips, **kwargs) as writer:
            for chip in order:
                rows, cols = chip.slices
                writer.add(chip, values[:, rows, cols])
        return writer

    forward = write(tmp_path / "f.tif", list(chips))
    write(tmp_path / "r.tif", list(chips)[::-1])
    tight = write(tmp_path / "t.tif", list(chips), memory_budget=2**20)
    with rasterio.open(tmp_path / "f.tif") as f, rasterio.open(tmp_path / "r.tif") as r:
        a, b = f.read(), r.read()
    with rasterio.open(tmp_path / "t.tif") as t:
        np.testing.assert_array_equal(t.read(), a)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, values)
    # live partial tiles never exceed the overlap rows under one chip row plus a few tiles
    bytes_per_px = 2 * 8 + 8  # float64 sums per band, float64 weight
    bound = chips.overlap * w + 4 * chips.stride**2
    assert forward.tiles_parked == 0
    assert forward.peak_accumulator_bytes <= bound * bytes_per_px
    # with a tight budget the partial tiles go to the scratch file instead
    assert tight.tiles_parked > 0
    assert tight.peak_accumulator_bytes <= 2**20 + 4 * chips.stride**2 * bytes_per_px
    assert leftovers(tmp_path) == sorted(tmp_path / n for n in ("f.tif", "r.tif", "t.tif"))


def test_failed_run_leaves_nothing(tmp_path):
    array = open_raster(terramind("DEM"))

    def boom(data, chip):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_chipwise(array, boom, tmp_path / "out.tif", chip_size=64, progress=False)
    assert leftovers(tmp_path) == []


def test_invalid_input_pixels_become_nodata(tmp_path):
    """Whatever ``fn`` returns, pixels with no valid input band are written as nodata."""
    array = open_raster(terramind("DEM"))
    holed = array.where(~((array.y < array.y[100]) & (array.x < array.x[50])))
    holed.attrs = array.attrs
    out = apply_chipwise(
        holed, lambda d, c: np.zeros_like(d), tmp_path / "z.tif", chip_size=64, progress=False
    )
    with rasterio.open(out) as dst:
        got = dst.read(1)
    invalid = np.isnan(holed.values[0])
    assert invalid.any() and np.isnan(got[invalid]).all() and (got[~invalid] == 0).all()
