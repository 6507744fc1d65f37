"""The chip grid: coverage, snapping, padding, transforms and blend weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from affine import Affine
from conftest import terramind
from rasterio.windows import transform as window_transform

from geocopgen.errors import GridError
from geocopgen.io import open_raster
from geocopgen.io.raster_source import RasterSource
from geocopgen.raster.chips import ChipGrid, chip_offsets, iter_chips, read_chip, read_chips


@pytest.mark.parametrize("chip_size", [16, 64, 256])
@pytest.mark.parametrize("overlap", [0, 5, 8])
def test_offsets_cover_every_pixel_and_snap_inward(chip_size, overlap):
    for length in range(1, 700, 7):
        offsets = chip_offsets(length, chip_size, overlap)
        covered = np.zeros(length, dtype=bool)
        for off in offsets:
            covered[off : off + chip_size] = True
            assert off >= 0 and (off + chip_size <= length or length < chip_size)
        assert covered.all()
        assert offsets == sorted(set(offsets))
        regular = offsets[:-1]
        assert all(b - a == chip_size - overlap for a, b in itertools.pairwise(regular))


def test_default_grid_on_a_full_major_tom_cell():
    grid = ChipGrid(1068, 1068)
    assert (grid.chip_size, grid.overlap, grid.stride) == (256, 32, 224)
    assert grid.row_offsets == [0, 224, 448, 672, 812]  # last one snapped to 1068 - 256
    assert len(grid) == 25


def test_iteration_yields_every_chip_once():
    """Row-major, with a snapped last row interleaved column by column with the row before."""
    grid = ChipGrid(1068, 700, chip_size=256, overlap=32)
    order = [(c.row, c.col) for c in grid]
    assert sorted(order) == [(i, j) for i in range(5) for j in range(3)]
    assert order[:3] == [(0, 0), (0, 1), (0, 2)]
    assert order[-6:] == [(3, 0), (4, 0), (3, 1), (4, 1), (3, 2), (4, 2)]


def test_chip_transform_is_the_window_transform():
    t = Affine(10.0, 0.0, 617301.82, 0.0, -10.0, 9625098.23)
    grid = ChipGrid(1000, 700, t, chip_size=128, overlap=16)
    for chip in grid:
        assert chip.transform == window_transform(chip.window, t)
        assert chip.window.width == chip.window.height == 128 and chip.pad == (0, 0)


def test_small_raster_is_reflection_padded():
    """A TerraMind tile (224 px) gets one 256 px chip, reflected at the bottom/right."""
    arr = open_raster(terramind("DEM"))
    grid = ChipGrid.from_array(arr)
    assert len(grid) == 1
    chip = read_chip(arr, next(iter(grid)))
    assert chip.data.shape == (1, 256, 256) and chip.chip.pad == (32, 32)
    values = arr.values
    np.testing.assert_array_equal(chip.data[:, :224, :224], values)
    np.testing.assert_array_equal(chip.data[:, 224 + 5, :224], values[:, 222 - 5, :])
    np.testing.assert_array_equal(chip.data[:, :224, 230], values[:, :, 216])
    assert chip.valid[:224, :224].all() and not chip.valid[224:].any()
    np.testing.assert_array_equal(chip.crop(chip.data), values)


def test_a_row_of_chips_is_one_read_of_a_cropped_lazy_raster(monkeypatch):
    """A crop of an opened raster is a dask slice of a slice; dask fuses only one of them into the
    reader, so every chip read reads the crop's whole chunk. ``read_chips`` reads a row once and
    cuts the same chips out of it, snapped last chip and reflection padding included."""
    arr = open_raster(terramind("S2L2A"))
    crop = arr.isel(y=slice(10, 210), x=slice(20, 140))  # 200 x 120 px
    grid = ChipGrid.from_array(crop, chip_size=64, overlap=16)
    row = [c for c in grid if c.row == 1]
    assert len(row) == 3 and row[-1].window.col_off == 120 - 64  # the snapped last column
    windows = []
    real_read = RasterSource.read

    def counting_read(self, window, bands=None):
        windows.append(window)
        return real_read(self, window, bands)

    monkeypatch.setattr(RasterSource, "read", counting_read)
    per_chip = [read_chip(crop, c) for c in row]
    reads_per_chip = len(windows)
    windows.clear()
    together = read_chips(crop, row)
    assert reads_per_chip == len(row) * len(windows)  # one read per band file, not per chip
    for one, cut in zip(per_chip, together, strict=True):
        assert one.chip == cut.chip
        np.testing.assert_array_equal(one.data, cut.data)
        np.testing.assert_array_equal(one.valid, cut.valid)

    small = ChipGrid.from_array(crop, chip_size=256)  # one chip, padded on both sides
    (chip,) = list(small)
    (cut,) = read_chips(crop, [chip])
    np.testing.assert_array_equal(cut.data, read_chip(crop, chip).data)
    assert cut.data.shape == (12, 256, 256) and chip.pad == (56, 136)
    assert read_chips(crop, []) == []


def test_valid_mask_and_empty_chips():
    arr = open_raster(terramind("DEM"))
    masked = arr.where(arr.x < arr.x[100])  # right half invalid
    masked.attrs = arr.attrs
    grid = ChipGrid.from_array(masked, chip_size=64, overlap=16)
    chips = list(iter_chips(masked, grid))
    assert len(chips) == len(grid)
    empty = [c for c in chips if c.empty]
    assert empty and all(c.window.col_off >= 100 for c in empty)
    for c in chips:
        cols = np.arange(c.window.col_off, c.window.col_off + 64)
        np.testing.assert_array_equal(c.valid[0], cols < 100)


def test_blend_weights():
    grid = ChipGrid(600, 600, chip_size=256, overlap=32)
    total = np.zeros((600, 600))
    for chip in grid:
        w = grid.weights(chip)
        assert w.shape == (256, 256) and (w > 0).all() and (w <= 1).all()
        rows, cols = chip.slices
        total[rows, cols] += w
        top = chip.edges[0]
        if top:
            assert w[0, 128] == 1.0  # no ramp on a raster edge
        else:
            assert w[0, 128] < 0.01  # raised cosine starts near zero
        assert w[128, 128] == 1.0
    assert (total > 0).all()


@pytest.mark.parametrize(("chip_size", "overlap"), [(1, 0), (256, 200), (64, -1)])
def test_bad_grid_parameters(chip_size, overlap):
    with pytest.raises(GridError):
        ChipGrid(100, 100, chip_size=chip_size, overlap=overlap)
