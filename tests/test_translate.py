"""The seamless translator on real rasters with a tiny random model (64 px chips): canvas layout,
position-seeded noise, georeference in = georeference out, nodata, samples, interrupts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch
from _translate_fixtures import grid_facts, one_torch_thread, tiny_pipeline  # noqa: F401
from conftest import EXPLORADORES, VIRGINIA, leftovers, terramind, write_variant

from geocopgen.errors import ConfigError, ModalityError, NoValidDataError
from geocopgen.io import grid_of, open_raster
from geocopgen.raster.grid import at_resolution, make_grid, sub_grid
from geocopgen.translation import (
    CanvasLayout,
    CanvasTranslator,
    TranslateOptions,
    positional_noise,
    translate_arrays,
    translate_to_file,
)
from geocopgen.translation.validity import PixelMask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return tiny_pipeline()


@pytest.fixture(scope="module")
def s2():
    return open_raster(terramind("S2L2A"))


def _run(pipe, target, conditions, path, **options):
    grid = grid_of(next(iter(conditions.values())))
    translator = CanvasTranslator(pipe, target, TranslateOptions(progress=False, **options))
    return translate_to_file(translator, grid, conditions, path)


# --- layout -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (219, 213), (700, 703), (1947, 1933)])
def test_layout_covers_the_raster_with_chips_that_decode_inside_the_canvas(size):
    height, width = size
    tile = grid_of(open_raster(terramind("DEM")))
    grid = make_grid(tile.crs, tile.transform, width, height)
    layout = CanvasLayout.for_grid(grid, factor=8, chip=32)
    rows, cols = layout.shape
    assert rows == max(-(-height // 8), 32) and cols == max(-(-width // 8), 32)
    assert layout.overlap_px == 64 and layout.latent_chips.shape == layout.pixel_chips.shape
    for chip in layout.pixel_chips:
        r, c, dr, dc = layout.latents_of(chip)
        assert r.stop <= rows and c.stop <= cols  # the canvas holds every decode window
        assert 0 <= dr < 8 and 0 <= dc < 8  # cropped by less than one latent cell
        assert (r.stop - r.start) * 8 >= dr + chip.size
    covered = np.zeros((height, width), dtype=bool)
    for chip in layout.latent_chips:
        pixels = layout.pixels_of(chip)
        assert pixels.window.row_off == chip.window.row_off * 8
        assert pixels.window.height + pixels.pad[0] == 256
        assert pixels.window.row_off + pixels.window.height <= height
        covered[pixels.slices] = True
    assert covered.all()  # the encoder reads (and so masks) every raster pixel


def test_layout_refuses_an_overlap_off_the_latent_lattice():
    grid = grid_of(open_raster(terramind("DEM")))
    with pytest.raises(Exception, match="multiple of 8"):
        CanvasLayout.for_grid(grid, factor=8, chip=32, overlap_px=20)


def test_pixel_mask_keeps_every_bit_of_unaligned_windows():
    """The packed mask the decoder reads nodata from agrees with a plain boolean raster for
    windows that start and end inside a byte, and ``&`` combines two conditions' masks."""
    rng = np.random.default_rng(0)
    height, width = 37, 61
    plain = [np.zeros((height, width), bool), np.zeros((height, width), bool)]
    masks = [PixelMask(height, width), PixelMask(height, width)]
    for _ in range(200):
        k = int(rng.integers(2))
        r0, c0 = int(rng.integers(height)), int(rng.integers(width))
        rows = slice(r0, int(rng.integers(r0 + 1, height + 1)))
        cols = slice(c0, int(rng.integers(c0 + 1, width + 1)))
        values = rng.random((rows.stop - rows.start, cols.stop - cols.start)) < 0.5
        plain[k][rows, cols] = values
        masks[k].set(rows, cols, values)
        np.testing.assert_array_equal(masks[k].get(rows, cols), values)
    everything = (slice(0, height), slice(0, width))
    for mask, expected in zip(masks, plain, strict=True):
        np.testing.assert_array_equal(mask.get(*everything), expected)
    both = masks[0] & masks[1]
    np.testing.assert_array_equal(both.get(*everything), plain[0] & plain[1])
    np.testing.assert_array_equal(
        both.get(slice(3, 9), slice(5, 30)), (plain[0] & plain[1])[3:9, 5:30]
    )


# --- seeding ------------------------------------------------------------------------------------
def test_noise_is_seeded_by_position_not_by_extent():
    """A crop whose origin moves by a multiple of 8 px gets the same noise where they overlap."""
    full = grid_of(open_raster(VIRGINIA))
    crop = sub_grid(full, rasterio.windows.Window(200, 136, 400, 300))  # 25 and 17 cells in
    a = positional_noise(CanvasLayout.for_grid(full, factor=8, chip=32), 4, 2, seed=7)
    b = positional_noise(CanvasLayout.for_grid(crop, factor=8, chip=32), 4, 2, seed=7)
    rows, cols = -(-300 // 8), -(-400 // 8)
    assert torch.equal(a[:, :, 17 : 17 + rows, 25 : 25 + cols], b[:, :, :rows, :cols])
    c = positional_noise(CanvasLayout.for_grid(crop, factor=8, chip=32), 4, 2, seed=8)
    assert not torch.equal(b, c) and not torch.equal(b[0], b[1])  # seed and sample matter
    assert abs(float(a.std()) - 1) < 0.02 and abs(float(a.mean())) < 0.02


# --- georeference, nodata, samples ----------------------------------------------------------------
def test_output_grid_is_the_input_grid_exactly(pipe, s2, tmp_path):
    out = tmp_path / "dem.tif"
    stats = _run(pipe, "dem", {"s2l2a": s2}, out)
    crs, transform, width, height, nodata = grid_facts(out)
    with rasterio.open(terramind("S2L2A")) as src:
        assert (crs, transform, width, height) == (src.crs, src.transform, src.width, src.height)
    assert np.isnan(nodata)
    with rasterio.open(out) as dst:
        assert dst.count == 1 and dst.descriptions == ("elevation",)
        tags = dst.tags()
        assert tags["MODALITY"] == "dem" and tags["STEPS"] == "3" and tags["SEED"] == "0"
        assert tags["SEAMLESS"] == "multidiffusion" and "S2L2A" in tags["CONDITIONS"]
        assert np.isfinite(dst.read()).all()
    assert stats.latent_chips == stats.pixel_chips == 25 and stats.denoised_chips == 25


def test_size_not_a_multiple_of_8_and_several_chips(pipe, tmp_path):
    """219 x 213 px starting 3 and 5 px into the tile: the last chips start off the lattice."""
    s2 = open_raster(terramind("S2L1C")).isel(y=slice(3, 222), x=slice(5, 218))
    s2 = open_raster(s2)  # a sliced ModalityArray is still one (georeference moved with it)
    out = tmp_path / "s1.tif"
    _run(pipe, "s1rtc", {"s2l1c": s2}, out)
    crs, transform, width, height, _ = grid_facts(out)
    assert make_grid(crs, transform, width, height) == grid_of(s2)
    with rasterio.open(out) as dst:
        assert dst.shape == (219, 213) and dst.descriptions == ("VV", "VH")
        assert np.isfinite(dst.read()).all()


def test_output_is_nodata_exactly_where_a_condition_is(pipe, tmp_path):
    def holes(values):
        values = values.astype(np.float32)
        values[:, 50:90, 20:200] = np.nan  # a cloud
        values[:, :, :64] = np.nan  # a whole chip column
        return values

    s2_path = write_variant(terramind("S2L2A"), tmp_path / "S2L2A.tif", data=holes, nodata=np.nan)
    s2 = open_raster(s2_path)
    s1 = open_raster(terramind("S1RTC"))
    out = tmp_path / "dem.tif"
    stats = _run(pipe, "dem", {"s2l2a": s2, "s1rtc": s1}, out)
    with rasterio.open(out) as dst:
        dem = dst.read(1)
    expected = np.isnan(s2.values).all(axis=0)
    assert np.array_equal(np.isnan(dem), expected)
    assert stats.denoised_chips < stats.latent_chips  # the empty chip column was skipped


def test_all_nodata_is_a_named_error_and_writes_nothing(pipe, tmp_path):
    (tmp_path / "in").mkdir()
    nothing = lambda v: np.full(v.shape, np.nan, np.float32)  # noqa: E731
    empty = write_variant(
        terramind("S2L2A"), tmp_path / "in" / "S2L2A.tif", data=nothing, nodata=np.nan
    )
    with pytest.raises(NoValidDataError, match="nothing to translate"):
        _run(pipe, "dem", {"s2l2a": open_raster(empty)}, tmp_path / "out" / "dem.tif")
    assert leftovers(tmp_path / "out") == []


def test_same_seed_same_output_other_seed_other_output(pipe, s2, tmp_path):
    paths = [tmp_path / f"{k}.tif" for k in range(3)]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        _run(pipe, "dem", {"s2l2a": s2}, path, seed=seed)
    a, b, c = (rasterio.open(p).read() for p in paths)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_samples_give_mean_and_std_bands(pipe, s2, tmp_path):
    out = tmp_path / "dem8.tif"
    _run(pipe, "dem", {"s2l2a": s2}, out, samples=4, seed=1)
    every = tmp_path / "each.tif"
    _run(pipe, "dem", {"s2l2a": s2}, every, samples=4, seed=1, reduce="samples")
    with rasterio.open(out) as dst, rasterio.open(every) as src:
        assert dst.descriptions == ("elevation", "elevation_std")
        assert "MODALITY" not in dst.tags() and dst.tags()["SAMPLES"] == "4"
        assert dst.units == ("m", "m")
        mean, std = dst.read()
        samples = src.read()
    assert samples.shape[0] == 4 and not np.allclose(samples[0], samples[1])
    np.testing.assert_allclose(mean, samples.mean(axis=0), rtol=1e-4, atol=1e-3)
    # The std is taken per chip and blended like any band, so it equals the std of the blended
    # samples wherever one chip covers a pixel (in overlaps it is the chips' weighted mean std).
    once = _coverage(CanvasTranslator(pipe, "dem").layout(grid_of(s2))) == 1
    assert once.mean() > 0.25  # a third of the tile at the default 1/4-chip overlap
    expected = samples.std(axis=0, ddof=1)
    np.testing.assert_allclose(std[once], expected[once], rtol=1e-3, atol=1e-3)
    assert (std > 0).all()


def _coverage(layout):
    count = np.zeros(layout.grid.shape, dtype=int)
    for chip in layout.pixel_chips:
        count[chip.slices] += 1
    return count


def test_native_resolution_output_for_a_dem(pipe, s2, tmp_path):
    out = tmp_path / "dem30.tif"
    grid = grid_of(s2)
    translator = CanvasTranslator(pipe, "dem", TranslateOptions(**QUIET))
    translate_to_file(translator, grid, {"s2l2a": s2}, out, out_grid=at_resolution(grid, 30))
    crs, transform, width, height, _ = grid_facts(out)
    assert (width, height) == (75, 75) and crs == grid.crs
    assert (transform.a, transform.e, transform.c, transform.f) == (
        30.0, -30.0, grid.transform.c, grid.transform.f
    )  # fmt: skip


def test_coarser_input_is_resampled_to_the_model_grid(pipe, tmp_path):
    """The 30 m Exploradores DEM as a condition: chipped on its 10 m model grid."""
    from geocopgen.io import model_grid, reproject

    dem = open_raster(EXPLORADORES).isel(y=slice(0, 40), x=slice(0, 48))
    dem = open_raster(dem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dem10 = reproject(dem, model_grid(dem))
    out = tmp_path / "s1.tif"
    _run(pipe, "s1rtc", {"dem": dem10}, out)
    assert grid_facts(out)[2:4] == (144, 120)


def test_independent_chips_differ_from_seamless(pipe, s2, tmp_path):
    seamless, naive = tmp_path / "a.tif", tmp_path / "b.tif"
    _run(pipe, "dem", {"s2l2a": s2}, seamless)
    _run(pipe, "dem", {"s2l2a": s2}, naive, seamless=False, overlap=0)
    with rasterio.open(seamless) as a, rasterio.open(naive) as b:
        assert b.tags()["SEAMLESS"].startswith("off") and b.tags()["OVERLAP"] == "0"
        assert not np.allclose(a.read(), b.read())


def test_target_equal_to_a_condition_is_refused(pipe, s2, tmp_path):
    with pytest.raises(ModalityError, match="already Sentinel-2"):
        _run(pipe, "s2l2a", {"s2l2a": s2}, tmp_path / "x.tif")
    assert leftovers(tmp_path) == []


def test_ctrl_c_mid_run_leaves_no_file(pipe, s2, tmp_path, monkeypatch):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return type(pipe).predict_model_output(pipe, *args, **kwargs)

    monkeypatch.setattr(pipe, "predict_model_output", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(pipe, "dem", {"s2l2a": s2}, tmp_path / "dem.tif")
    assert leftovers(tmp_path) == []


def test_translate_arrays_is_the_evaluation_interface(pipe):
    """Arrays of any size in, ``(N, C, H, W)`` samples out: here 3 chips wide, not 8-aligned."""
    s2 = open_raster(terramind("S2L2A")).values[:, :150, :]
    out = translate_arrays(pipe, {"s2l2a": s2}, "s1rtc", num_samples=2, seed=3)
    assert out.shape == (2, 2, 150, 224) and out.dtype == np.float32
    assert np.isfinite(out).all() and not np.allclose(out[0], out[1])
    again = translate_arrays(pipe, {"s2l2a": s2}, "s1rtc", num_samples=2, seed=3)
    assert np.array_equal(out, again)


def test_strength_is_refused_for_a_model_that_has_no_first_guess_to_start_from(pipe, s2):
    """``strength`` moves a COP-GEN-layout model's start; the 4-modality translator has none, so
    the option is refused with a one-line reason instead of being ignored."""
    with pytest.raises(ConfigError, match="strength applies to COP-GEN-layout models"):
        _run(pipe, "dem", {"s2l2a": s2}, None, strength=0.5)
