"""Gap filling on real rasters: a clear TerraMind Sentinel-2 L2A tile with a real cloud shape
(the bright-blue test on the cloudy Brazil-coast L1C tile) laid over it, Sentinel-1 of the same
place as the condition, the bundled model with two solver calls. Clear pixels must come back
bit for bit, the georeference exactly, filled pixels in the physical range; bad masks get one
line and leave nothing behind."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import terramind
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import ConfigError, GeoCopGenWarning, InputError
from geocopgen.evaluation.cloud_shapes import bright_cloud_shape, write_mask
from geocopgen.raster.grid import grid_of
from geocopgen.translation import fill_output
from geocopgen.translation.fill_mask import SCL_FILLED, dilate, from_scl

S2 = terramind("S2L2A")
S1 = terramind("S1RTC")
CLOUDY_L1C = terramind("S2L1C", "282D_485L_3_3")
FAST = {"steps": 2, "progress": False}


@pytest.fixture(scope="module")
def clouds(tmp_path_factory) -> Path:
    """The cloudy tile's real cloud shape laid over the clear tile's grid."""
    with rasterio.open(S2) as src:
        grid = grid_of(src)
    shape = bright_cloud_shape(CLOUDY_L1C)
    assert 0.1 < shape.mean() < 0.5  # a real, partly cloudy shape
    return write_mask(shape, grid, tmp_path_factory.mktemp("mask") / "clouds.tif")


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {
            "crs": src.crs, "transform": src.transform, "shape": src.shape,
            "dtypes": src.dtypes, "nodata": src.nodata, "count": src.count,
        }  # fmt: skip


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(bool)


def test_api_keeps_clear_pixels_bit_for_bit_and_the_georeference(clouds, tmp_path):
    out = tmp_path / "filled.tif"
    result = api.fill(S2, cond={"s1rtc": S1}, mask=clouds, output=out, **FAST)
    before, where = _read(S2)
    after, there = _read(out)
    assert there == where  # CRS, transform, shape, dtype, nodata, band count: exactly the input's
    cloud = _mask(clouds)
    np.testing.assert_array_equal(after[:, ~cloud], before[:, ~cloud])
    assert not np.array_equal(after[:, cloud], before[:, cloud])
    # filled digital numbers are reflectance in the modality's range, stored as the input stores
    reflectance = after[:, cloud].astype(np.float64) / 10000
    assert (reflectance >= 0).all() and (reflectance <= 1.5).all()
    flags = _read(tmp_path / "filled_filled.tif")[0][0]
    np.testing.assert_array_equal(flags == fill_output.FILLED, cloud)
    with rasterio.open(out) as src:
        tags = src.tags()
        descriptions = src.descriptions
    assert tags["FILL_METHOD"] == "model" and tags["FILL_MASK"] == f"file {clouds}"
    assert float(tags["FILLED_FRACTION"]) == pytest.approx(cloud.mean(), abs=1e-6)
    assert {"MODEL", "SEED", "PRECISION", "SAMPLER"} <= set(tags)
    with rasterio.open(S2) as src:
        assert descriptions == src.descriptions
    np.testing.assert_array_equal(result.filled.values, after)
    assert result.attrs["fill_method"] == "model"


def test_the_cli_writes_the_fill_its_flags_and_the_spread_of_samples(clouds, tmp_path):
    out = tmp_path / "cli.tif"
    args = ["fill", str(S2), "-o", str(out), "--mask", str(clouds), "--cond", f"s1rtc={S1}",
            "--steps", "2", "--samples", "2", "--dilate", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (" in result.output and "of the pixels filled, model)" in result.output
    grown = dilate(_mask(clouds), 2)
    flags = _read(tmp_path / "cli_filled.tif")[0][0]
    np.testing.assert_array_equal(flags == fill_output.FILLED, grown)
    std = _read(tmp_path / "cli_std.tif")[0]
    assert std.shape[0] == 12 and np.isnan(std[:, ~grown]).all()
    assert np.isfinite(std[:, grown]).all() and (std[:, grown] >= 0).all()
    before, after = _read(S2)[0], _read(out)[0]
    np.testing.assert_array_equal(after[:, ~grown], before[:, ~grown])


def test_the_accessor_fills_an_opened_array_as_the_api_does(clouds):
    s2 = api.open_inputs(S2)["s2l2a"].array
    via_accessor = s2.copgen.fill(cond={"s1rtc": S1}, mask=clouds, **FAST)
    via_api = api.fill(S2, cond={"s1rtc": S1}, mask=clouds, **FAST)
    np.testing.assert_array_equal(via_accessor.filled.values, via_api.filled.values)
    assert via_accessor.filled.dtype == np.int16  # stored values, from the array's file
    assert via_accessor.filled.rio.transform() == s2.rio.transform()


def test_an_array_in_memory_is_filled_in_physical_units(clouds):
    s2 = api.open_inputs(S2)["s2l2a"].array
    computed = (s2 * 1.0).compute()  # no longer an opened file: its values are what is stored
    computed.attrs = dict(s2.attrs, source="memory")
    result = api.fill(computed, mask=clouds, method="interpolate")
    cloud = _mask(clouds)
    values = result.filled.values
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values[:, ~cloud], computed.values[:, ~cloud])
    assert np.isfinite(values[:, cloud]).all()


def test_the_held_cells_end_at_the_encoded_input(clouds):
    """The sampler's final latents equal the input's latents in every cell whose pixels are all
    clear (the noise prediction there is replaced at every call), and differ where cloudy."""
    from geocopgen.copgen.sampler import DiscreteVPSchedule
    from geocopgen.io.align import model_grid
    from geocopgen.options import TranslateOptions
    from geocopgen.translation.canvas import positional_noise
    from geocopgen.translation.grouped import (
        Keep,
        denoise_groups,
        encode_condition,
        kept_cells,
        plan_grouped,
    )

    model = api.load_model("default")
    inputs = api.open_inputs(S2, {"s1rtc": S1})
    cloud = _mask(clouds)
    keep = Keep(inputs["s2l2a"], cloud)
    scene = model_grid(grid_of(inputs["s2l2a"].array))
    plan = plan_grouped(model, "s2l2a", scene, {"s1rtc": inputs["s1rtc"]},
                        TranslateOptions(steps=3, progress=False), keep=keep)  # fmt: skip
    conditions = {
        k: encode_condition(model, plan, "s1rtc", k, progress=False)[0]
        for k in plan.condition_slots["s1rtc"]
    }
    kept = {k: kept_cells(model, plan, k) for k in plan.targets}
    active = np.ones(plan.layout.chip_shape, dtype=bool)
    final = denoise_groups(model, plan, conditions, active, kept)
    # the published sampler stops at t_end > 0, so a held cell ends at α z + σ ε₀ (its start
    # noise ε₀), exactly as a generated cell keeps that much noise
    schedule = DiscreteVPSchedule.copgen()
    t_end = plan.preset.time_grid()[-1:]
    alpha, sigma = schedule.alpha(t_end), schedule.sigma(t_end)
    for i, (key, (z, cells)) in enumerate(kept.items()):
        assert cells.any() and (~cells).any()
        canvas = plan.layout.canvases[key]
        eps = positional_noise(canvas, z.shape[1], 1, plan.options.seed + 7919 * i)
        expected = alpha * z + sigma * eps
        held = torch.from_numpy(cells)
        torch.testing.assert_close(final[key][0][:, held], expected[0][:, held], atol=1e-4, rtol=0)
        assert not torch.allclose(final[key][0][:, ~held], expected[0][:, ~held], atol=1e-2)


def test_the_baselines_fill_and_ridge_needs_a_condition(clouds):
    cloud = _mask(clouds)
    before = _read(S2)[0]
    for method in ("interpolate", "ridge"):
        result = api.fill(S2, cond={"s1rtc": S1}, mask=clouds, method=method)
        values = result.filled.values
        np.testing.assert_array_equal(values[:, ~cloud], before[:, ~cloud])
        error = np.abs(values[:, cloud].astype(float) - before[:, cloud]).mean() / 10000
        assert error < 0.05, (method, error)  # a sane fill of a clear scene, not noise
        assert result.attrs["fill_method"] == method
    with pytest.raises(ConfigError, match="method='ridge' predicts from other modalities"):
        api.fill(S2, mask=clouds, method="ridge")


def test_matching_carries_the_residual_into_the_mask_and_leaves_clear_pixels():
    rng = np.random.default_rng(0)
    physical = (0.3 + 0.01 * rng.standard_normal((20, 20))).astype(np.float32)
    method = np.full((20, 20), 0.1, dtype=np.float32)  # the right pattern at the wrong level
    fill = np.zeros((20, 20), dtype=bool)
    fill[5:15, 5:15] = True
    whole = fill_output.matched(physical, method, fill, None)
    np.testing.assert_array_equal(whole[~fill], method[~fill])  # composed from the input later
    assert np.abs(whole[fill] - 0.3).max() < 0.03  # the level of the clear surroundings
    fading = fill_output.matched(physical, method, fill, 3)
    assert fading[9, 9] == pytest.approx(0.1)  # five pixels in: the method's own value
    assert abs(fading[5, 10] - 0.3) < abs(fading[6, 10] - 0.3) < abs(fading[7, 10] - 0.3)
    np.testing.assert_array_equal(fill_output.matched(physical, method, fill, 0), method)


def test_a_nodata_hole_is_filled_by_default(tmp_path):
    holed = tmp_path / "holed.tif"
    with rasterio.open(S2) as src:
        profile, values = src.profile, src.read()
    values[:, 60:90, 100:140] = 0  # DN 0 is Sentinel-2's nodata
    with rasterio.open(holed, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(values)
    result = api.fill(holed, method="interpolate", output=tmp_path / "out.tif")
    after = _read(tmp_path / "out.tif")[0]
    assert (after[:, 60:90, 100:140] > 0).all()
    np.testing.assert_array_equal(after[:, :60], values[:, :60])
    assert result.attrs["fill_mask"] == "nodata"


def test_scl_classes_from_the_classification_beside_the_input(tmp_path):
    classes = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(np.flatnonzero(from_scl(classes)), sorted(SCL_FILLED))
    product = tmp_path / "product"
    product.mkdir()
    s2 = product / "T36MYB_20210715_B_10m.tif"
    s2.write_bytes(S2.read_bytes())
    with rasterio.open(S2) as src:
        grid = grid_of(src)
    scl = np.full((112, 112), 4, dtype=np.uint8)  # vegetation, at 20 m as products store it
    scl[50:65, 10:40] = 9  # cloud, high probability
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", "width": 112, "height": 112,
               "crs": grid.crs.to_wkt(),
               "transform": grid.affine @ rasterio.Affine.scale(2)}  # fmt: skip
    with rasterio.open(product / "T36MYB_20210715_SCL_20m.tif", "w", **profile) as dst:
        dst.write(scl, 1)
    result = api.fill(s2, mask="scl", method="interpolate", output=tmp_path / "out.tif")
    expected = np.kron(scl == 9, np.ones((2, 2), bool))
    np.testing.assert_array_equal(result.filled_mask.values == fill_output.FILLED, expected)
    assert result.attrs["fill_mask"].startswith("scl (classes 3, 8, 9, 10)")
    with pytest.raises(InputError, match="no scene classification layer"):
        api.fill(S2, mask="scl", method="interpolate")


def test_bad_masks_say_so_in_one_line_and_leave_nothing_behind(clouds, tmp_path):
    out = tmp_path / "new" / "filled.tif"
    masks = tmp_path / "masks"
    masks.mkdir()
    with rasterio.open(S2) as src:
        grid = grid_of(src)
    elsewhere = write_mask(np.ones((50, 50), bool), grid, masks / "elsewhere.tif")
    with rasterio.open(elsewhere, "r+") as dst:
        t = dst.transform
        dst.transform = rasterio.Affine(t.a, 0, t.c + 1e5, 0, t.e, t.f)
    no_crs = masks / "no_crs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", count=1, dtype="uint8", width=8,
                       height=8) as dst:  # fmt: skip
        dst.write(np.ones((1, 8, 8), np.uint8))
    cloudy = write_mask(np.ones((224, 224), bool), grid, masks / "all.tif")
    cases = [(elsewhere, "does not overlap"), (no_crs, "has no CRS"),
             (cloudy, "every pixel is to be filled")]  # fmt: skip
    for mask, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            result = CliRunner().invoke(app, ["-q", "fill", str(S2), "-o", str(out), "--mask",
                                              str(mask), "--method", "interpolate"])  # fmt: skip
        assert result.exit_code == 1, result.output
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and message in lines[0] and str(mask) in lines[0]
        assert list(tmp_path.iterdir()) == [masks]  # no output folder, no temporary file


def test_an_all_clear_mask_is_a_stated_no_op_and_another_crs_is_reprojected(tmp_path):
    with rasterio.open(S2) as src:
        grid = grid_of(src)
    clear = write_mask(np.zeros((224, 224), bool), grid, tmp_path / "clear.tif")
    with pytest.warns(GeoCopGenWarning, match="nothing to fill"):
        api.fill(S2, mask=clear, output=tmp_path / "same.tif", **FAST)
    np.testing.assert_array_equal(_read(tmp_path / "same.tif")[0], _read(S2)[0])
    # the same cloud block in geographic coordinates: reprojected, said so, filled where it lies
    block = np.zeros((224, 224), bool)
    block[50:100, 50:100] = True
    utm = write_mask(block, grid, tmp_path / "utm.tif")
    wgs84 = tmp_path / "wgs84.tif"
    with rasterio.open(utm) as src:
        from rasterio.warp import calculate_default_transform, reproject

        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width,
                                                      src.height, *src.bounds)  # fmt: skip
        data = np.zeros((h, w), np.uint8)
        reproject(src.read(1), data, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:4326")  # fmt: skip
    with rasterio.open(wgs84, "w", driver="GTiff", count=1, dtype="uint8", width=w, height=h,
                       crs="EPSG:4326", transform=transform) as dst:  # fmt: skip
        dst.write(data, 1)
    with pytest.warns(GeoCopGenWarning, match="reprojected onto the input"):
        result = api.fill(S2, mask=wgs84, method="interpolate")
    filled = result.filled_mask.values == fill_output.FILLED
    assert (filled == block).mean() > 0.98  # the same block, up to its reprojected edge


def test_the_model_mask_is_the_models_own_cloud_mask(tmp_path):
    """``mask="model"``: the bundled model's cloud-mask slot, generated from the input; on this
    clear tile it marks nothing, a stated no-op that writes the input unchanged."""
    with pytest.warns(GeoCopGenWarning, match=r"the mask \(model\) marks no pixel"):
        api.fill(S2, mask="model", output=tmp_path / "out.tif", **FAST)
    np.testing.assert_array_equal(_read(tmp_path / "out.tif")[0], _read(S2)[0])
