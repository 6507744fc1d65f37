"""Translation with a COP-GEN model converted from the parity fixtures, on real rasters: one
canvas per resolution group, outputs on each group's native grid, categorical outputs with colour
tables, lat/lon per chip, through the API, the accessor and the CLI.

The fixtures hold tiny official VAEs for three slots (S2 L2A 10 m, S1 RTC, DEM); the other image
slots get structurally identical random VAEs (the spec says they differ only in channels), so
every output path runs. The weights are random: these tests check georeference, plumbing and
determinism, not quality.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import VIRGINIA, terramind
from diffusers import AutoencoderKL
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.copgen.convert import convert_copgen
from geocopgen.copgen.layout import COPGEN_SLOTS, MODALITY_SLOTS, slot
from geocopgen.copgen.model import CopgenModel
from geocopgen.domain import DomainWarning
from geocopgen.errors import ConfigError, OutputError
from geocopgen.io import OpenedInput, reproject
from geocopgen.modalities import get_modality
from geocopgen.raster.grid import at_resolution, grid_of
from geocopgen.translation.grouped import group_pixels
from geocopgen.translation.groups import GroupLayout

REF = Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity"
FIXTURE_VAES = ("S2L2A_B02_B03_B04_B08", "S1RTC_vh_vv", "DEM_DEM")
#: Plumbing tests run two solver calls; the sampler tests (test_copgen_sampler.py) run 50.
QUIET = {"progress": False, "date": "2021-07-15"}
FAST = {**QUIET, "steps": 2}


def _random_vae(key: str, seed: int) -> AutoencoderKL:
    s = next(s for s in COPGEN_SLOTS if s.key == key)
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=s.image_channels,
        out_channels=s.image_channels,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[32, 32, 32, 32],
        layers_per_block=2,
        latent_channels=8,
        norm_num_groups=32,
        scaling_factor=s.scale_factor,
    ).eval()


@pytest.fixture(scope="module")
def copgen_model(tmp_path_factory) -> Path:
    """A model folder: the fixture backbone and VAEs converted, the other slots' VAEs random."""
    root = tmp_path_factory.mktemp("copgen")
    vaes = root / "vaes"
    vaes.mkdir()
    for key in FIXTURE_VAES:
        shutil.copy(REF / f"vae_tiny_{key}.pth", vaes / f"{key}.pth")
    converted = convert_copgen(
        REF / "backbone_tiny.pth",
        vaes,
        root / "converted",
        config=REF / "backbone_tiny_config.json",
    )
    extra = {
        s.key: _random_vae(s.key, i)
        for i, s in enumerate(COPGEN_SLOTS)
        if s.kind == "image" and s.key not in FIXTURE_VAES
    }
    full = CopgenModel(converted.backbone, {**converted.vaes, **extra}, size=converted.size)
    full.save_pretrained(root / "model")
    return root / "model"


def test_groups_derive_exactly_from_the_scene_grid():
    scene = grid_of(api.open_inputs(terramind("S2L2A"))["s2l2a"].array)
    keys = [k for keys in MODALITY_SLOTS.values() for k in keys]
    layout = GroupLayout.for_scene(scene, keys)
    for key, canvas in layout.canvases.items():
        res = next(s.resolution for s in COPGEN_SLOTS if s.key == key)
        expected = scene if res == 10 else at_resolution(scene, res)
        assert canvas.grid == expected
        assert canvas.grid.affine.c == scene.affine.c and canvas.grid.affine.f == scene.affine.f
        assert canvas.latent_chips.shape == layout.chip_shape  # the same ground chips
    lonlat = layout.chip_centres_lonlat()
    assert lonlat.shape == (*layout.chip_shape, 2)
    assert not np.allclose(lonlat[0, 0], lonlat[1, 1])  # two chips, two places
    assert np.allclose(lonlat.mean(axis=(0, 1)), (34.0667, -3.4021), atol=0.01)


def test_two_chips_get_different_latlon_tokens(copgen_model, monkeypatch):
    """The lat/lon token given to the backbone is the chip's own centre."""
    from geocopgen.translation import grouped

    seen: list[torch.Tensor] = []
    real = grouped._chip_inputs

    def spy(*args, **kwargs):
        inputs, times = real(*args, **kwargs)
        seen.append(inputs["3d_cartesian_lat_lon"].clone())
        return inputs, times

    monkeypatch.setattr(grouped, "_chip_inputs", spy)
    api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    tokens = torch.cat(seen[:1])[:, 0, 0]  # the first call: every chip once
    assert len(tokens) == 4
    assert len({tuple(t.tolist()) for t in tokens}) == 4


@pytest.mark.parametrize(
    ("to", "resolution", "bands"),
    [("dem", 30, ["elevation"]), ("s1rtc", 10, ["VV", "VH"]), ("lulc", 10, ["land_cover"])],
)
def test_api_outputs_lie_on_their_native_grids(copgen_model, tmp_path, to, resolution, bands):
    scene = grid_of(api.open_inputs(terramind("S2L2A"))["s2l2a"].array)
    out = tmp_path / f"{to}.tif"
    result = api.translate(terramind("S2L2A"), to, model=copgen_model, output=out, **FAST)
    expected = scene if resolution == 10 else at_resolution(scene, resolution)
    assert [str(b) for b in result["band"].values] == bands
    with rasterio.open(out) as src:
        assert src.crs == scene.crs
        assert src.transform == expected.affine
        assert (src.height, src.width) == expected.shape
        assert src.tags()["DATE"] == "2021-07-15"
        assert src.tags()["SLOT"] in MODALITY_SLOTS[to]
        values = src.read()
        if to == "lulc":
            assert src.dtypes[0] == "uint8" and src.nodata == 255
            assert set(np.unique(values)) <= {0, 1, 2, 4, 5, 7, 8, 9, 10, 11}
            assert src.colormap(1)[1][:3] == (26, 91, 171)
            assert src.tags()["CLASS_11"] == "rangeland"
        else:
            assert np.isfinite(values).all()
    assert result.rio.transform() == expected.affine


def test_s2_target_comes_out_as_three_group_files(copgen_model, tmp_path):
    scene = grid_of(api.open_inputs(terramind("S2L2A"))["s2l2a"].array)
    out = tmp_path / "l1c.tif"
    result = api.translate(terramind("S2L2A"), "s2l1c", model=copgen_model, output=out, **FAST)
    assert set(result) == set(MODALITY_SLOTS["s2l1c"])
    for res, bands in ((10, 4), (20, 6), (60, 3)):
        with rasterio.open(tmp_path / f"l1c_{res}m.tif") as src:
            expected = scene if res == 10 else at_resolution(scene, res)
            assert src.transform == expected.affine and src.count == bands
            assert (src.height, src.width) == expected.shape
    assert not out.exists()


def test_in_memory_equals_the_file_and_is_deterministic(copgen_model, tmp_path):
    memory = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    again = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    written = api.translate(
        terramind("S2L2A"), "dem", model=copgen_model, output=tmp_path / "d.tif", **FAST
    )
    np.testing.assert_array_equal(memory.values, again.values)
    np.testing.assert_array_equal(memory.values, written.values)
    other = api.translate(terramind("S2L2A"), "dem", model=copgen_model, seed=1, **FAST)
    assert not np.array_equal(memory.values, other.values)


def test_the_date_is_required_and_the_s2_dn_policy_is_recorded(copgen_model):
    with pytest.raises(ConfigError, match="acquisition date"):
        api.translate(terramind("S2L2A"), "dem", model=copgen_model, progress=False)
    result = api.translate(
        terramind("S2L2A"), "dem", model=copgen_model, s2_dn="reflectance", **FAST
    )
    assert result.attrs["copgen_s2_dn_policy"] == "reflectance"
    assert result.attrs["copgen_s2_dn_offset"] == "0"


def test_accessor_and_cli(copgen_model, tmp_path):
    s2 = api.open_inputs(terramind("S2L2A"))["s2l2a"].array
    via_accessor = s2.copgen.translate("dem", model=copgen_model, **FAST)
    via_api = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    np.testing.assert_array_equal(via_accessor.values, via_api.values)
    out = tmp_path / "cli.tif"
    args = ["translate", str(terramind("S2L2A")), "--to", "dem", "-o", str(out)]
    args += ["--model", str(copgen_model), "--date", "2021-07-15", "--steps", "2"]
    result = CliRunner().invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), via_api.values)


def test_generate_on_a_bbox_and_what_info_says(copgen_model):
    """Unconditional generation on a grid built from a place and a date, and the model's
    capabilities as ``info`` reports them."""
    dem = api.generate(
        "dem", bbox=(34.05, -3.42, 34.08, -3.39), model=copgen_model, steps=1, **QUIET
    )
    # generate writes on the 10 m working grid; grid="native" keeps the DEM's 30 m
    assert dem.rio.crs.to_epsg() == 32736 and abs(dem.rio.resolution()[0]) == 10
    assert np.isfinite(dem.values).all()
    native = api.generate(
        "dem", bbox=(34.05, -3.42, 34.08, -3.39), model=copgen_model, steps=1, grid="native",
        **QUIET,
    )
    assert abs(native.rio.resolution()[0]) == 30
    can = api.capabilities("s2l2a", copgen_model)
    assert set(can.translate_to) == {"s2l1c", "s1rtc", "dem", "lulc", "cloud_mask"}
    # encode() of a COP-GEN model: one latent array per group (tests/test_copgen_finetune.py)
    latents = api.encode(terramind("S2L2A"), model=copgen_model, progress=False)
    assert [v.rio.resolution()[0] for v in latents.values()] == [80.0, 160.0, 480.0]


def test_terramind_land_cover_is_read_as_esri_codes_and_conditions_a_translation(copgen_model):
    """TerraMind stores class indices 0..9; read by path evidence and checked against the
    values, they become ESRI codes (4 → 5 crops, 9 → 11 rangeland), and land cover conditions
    a COP-GEN translation like any input."""
    from geocopgen.io import open_raster, plan_input

    plan = plan_input(terramind("LULC"))
    assert (
        plan.modality.name == "lulc" and plan.evidence["lulc_scheme"] == "'terramind' in the path"
    )
    with rasterio.open(terramind("LULC")) as src:
        raw = src.read(1)
    codes = open_raster(terramind("LULC")).values[0]
    assert set(np.unique(raw)) == {4, 9} and set(np.unique(codes)) == {5.0, 11.0}
    assert np.array_equal(codes == 5.0, raw == 4)
    dem = api.translate(
        terramind("S2L2A"), "dem", cond={"lulc": terramind("LULC")}, model=copgen_model, **FAST
    )
    alone = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    assert "lulc=" in dem.attrs["conditions"]
    assert not np.array_equal(dem.values, alone.values)


def test_outputs_are_nodata_where_a_condition_is(copgen_model, tmp_path):
    """The western 120 px (1200 m) of the condition are nodata: the 30 m DEM is NaN exactly at
    the pixels whose centres fall there, and valid elsewhere."""
    from conftest import write_variant

    def blank_west(values):
        values = values.copy()
        values[:, :, :120] = 0
        return values

    (tmp_path / "S2L2A").mkdir()  # the folder name says what the file is
    masked = write_variant(terramind("S2L2A"), tmp_path / "S2L2A" / "38D.tif", data=blank_west,
                           nodata=0)  # fmt: skip
    dem = api.translate(masked, "dem", model=copgen_model, **FAST).values[0]
    west = (np.arange(dem.shape[1]) + 0.5) * 30 < 1200
    assert np.isnan(dem[:, west]).all()
    assert np.isfinite(dem[:, ~west]).all()


def test_on_the_input_grid_on_request_and_the_official_posterior_sample(copgen_model):
    scene = grid_of(api.open_inputs(terramind("S2L2A"))["s2l2a"].array)
    dem = api.translate(terramind("S2L2A"), "dem", model=copgen_model, grid="input", **FAST)
    assert dem.rio.transform() == scene.affine and dem.shape[1:] == scene.shape
    assert "bilinear" in dem.attrs["resampled_to"] and np.isfinite(dem.values).all()
    sampled = api.translate(terramind("S2L2A"), "dem", model=copgen_model, posterior="sample",
                            **FAST)  # fmt: skip
    again = api.translate(terramind("S2L2A"), "dem", model=copgen_model, posterior="sample",
                          **FAST)  # fmt: skip
    mean = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    np.testing.assert_array_equal(sampled.values, again.values)  # seeded
    assert not np.array_equal(sampled.values, mean.values)
    assert sampled.attrs["condition_latents"] == "posterior sample (official)"


def test_every_sample_is_written_on_request_and_they_reduce_to_the_mean_and_std(copgen_model):
    """``reduce="samples"`` keeps each sample's bands, sample-major; they are the very samples
    whose per-pixel mean and standard deviation the default writes."""
    opts = dict(model=copgen_model, samples=2, seed=3, **FAST)
    reduced = api.translate(terramind("S2L2A"), "dem", **opts)
    every = api.translate(terramind("S2L2A"), "dem", reduce="samples", **opts)
    assert list(every.band.values) == ["elevation_s0", "elevation_s1"]
    assert every.rio.transform() == reduced.rio.transform() and every.shape == reduced.shape
    mean, std = reduced.values
    np.testing.assert_allclose(every.values.mean(axis=0), mean, rtol=1e-5, atol=1e-3)
    # the std is taken per chip and blended like any band: the samples' std where one chip
    # covers a pixel, the chips' weighted mean std in overlaps (as the 4-modality translator)
    scene = grid_of(api.open_inputs(terramind("S2L2A"))["s2l2a"].array)
    canvas = GroupLayout.for_scene(scene, ["DEM_DEM"]).canvases["DEM_DEM"]
    count = np.zeros(canvas.grid.shape, dtype=int)
    for chip in canvas.pixel_chips:
        count[chip.slices] += 1
    once = count == 1
    assert once.sum() > 400  # 9 % of this small tile's 30 m pixels
    expected = every.values.std(axis=0, ddof=1)
    np.testing.assert_allclose(std[once], expected[once], rtol=1e-4, atol=1e-3)
    merged = api.translate(terramind("S1RTC"), "s2l2a", grid="input", reduce="samples", **opts)
    bands = merged.band.values.tolist()
    assert bands[:3] == ["B01_s0", "B02_s0", "B03_s0"] and bands[-1] == "B12_s1"
    assert len(bands) == 2 * 12
    with pytest.raises(ConfigError, match="class slots"):
        api.translate(terramind("S2L2A"), "lulc", reduce="samples", **opts)


def test_strength_starts_part_way_and_is_tagged(copgen_model, tmp_path):
    """``strength`` (API and ``--strength``) overrides the model's start: below 1 the sampler
    starts from the first guess (for the published layout without one, the latents' mean)
    noised to that time, and the output's SAMPLER tag says so."""
    full = api.translate(terramind("S2L2A"), "dem", model=copgen_model, **FAST)
    part = api.translate(terramind("S2L2A"), "dem", model=copgen_model, strength=0.3, **FAST)
    assert "from the first guess" not in full.attrs["sampler"]
    assert part.attrs["sampler"].endswith("from the first guess at t = 0.3")
    assert part.rio.transform() == full.rio.transform() and part.shape == full.shape
    assert not np.array_equal(part.values, full.values)
    out = tmp_path / "cli.tif"
    args = ["translate", str(terramind("S2L2A")), "--to", "dem", "-o", str(out), "--strength"]
    args += ["0.3", "--model", str(copgen_model), "--date", "2021-07-15", "--steps", "2"]
    result = CliRunner().invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), part.values)
        assert src.tags()["SAMPLER"] == part.attrs["sampler"]
    with pytest.raises(ConfigError, match=r"strength must be in \(0, 1\]"):
        api.translate(terramind("S2L2A"), "dem", model=copgen_model, strength=0.0, **FAST)


def _aligned_s2_folder(folder: Path) -> Path:
    """Virginia's 13 L1C band files cropped so that the 10, 20 and 60 m files share one origin,
    as the bands of a Sentinel-2 tile do (Virginia's own crops are offset by 10-20 m)."""
    folder.mkdir()
    starts = {10: (4, 5), 20: (2, 3), 60: (1, 1)}  # (row, col) of 435780 E, 4179420 N
    sizes = {10: 300, 20: 150, 60: 50}
    for path in sorted(VIRGINIA.glob("B*.tif")):
        with rasterio.open(path) as src:
            res = round(src.res[0])
            (r, c), n = starts[res], sizes[res]
            window = rasterio.windows.Window(c, r, n, n)
            profile = src.profile | {"width": n, "height": n,
                                     "transform": src.window_transform(window)}  # fmt: skip
            with rasterio.open(folder / path.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
    return folder


def test_a_group_stored_at_its_resolution_is_read_as_stored(tmp_path):
    """A condition's 20 m and 60 m groups come from its band files straight onto each group's
    grid: bands stored there are read as stored, not resampled to 10 m and back."""
    folder = _aligned_s2_folder(tmp_path / "l1c")
    s2 = api.open_inputs(folder)["s2l1c"]
    scene = grid_of(s2.array)
    for res, bands in ((20, ["B05", "B06", "B07", "B8A", "B11", "B12"]),
                       (60, ["B01", "B09", "B10"])):  # fmt: skip
        group = group_pixels(s2, bands, at_resolution(scene, res))
        offset = int(s2.array.attrs["s2_offset"])
        for name in bands:
            with rasterio.open(folder / f"{name}.tif") as src:
                assert grid_of(src) == at_resolution(scene, res)
                stored = src.read(1).astype(np.float64)
            expected = np.where(stored == 0, np.nan, (stored + offset) / 10000).astype(np.float32)
            np.testing.assert_array_equal(group.sel(band=name).values, expected)
    # the same array given without its files (as a user's DataArray is) is resampled from its
    # own 10 m grid instead, where its 20 m bands were put when it was opened: close to the
    # stored pixels, not equal. (Before inputs were passed explicitly, ``s2.load()`` loaded
    # ``s2`` in place, so this compared the resampled route with itself.)
    g20 = at_resolution(scene, 20)
    resampled = group_pixels(OpenedInput(s2.array.copy(deep=True).load()), ["B05"], g20)
    stored = group_pixels(s2, ["B05"], g20).values
    assert grid_of(resampled) == g20
    expected = reproject(s2.array.sel(band=["B05"]), g20, warn=False).values
    np.testing.assert_array_equal(resampled.values, expected)
    assert not np.array_equal(resampled.values, stored)
    np.testing.assert_allclose(resampled.values, stored, atol=0.05)


def test_a_coarse_group_pixel_partly_outside_the_raster_is_nodata():
    """A 224 px TerraMind tile is 37 1/3 pixels of 60 m: the last row and column of its 60 m
    group also cover ground beyond the raster and are nodata; the others are the mean of their
    6 x 6 pixels of 10 m (the tile stores every band at 10 m)."""
    s2 = api.open_inputs(terramind("S2L2A"))["s2l2a"]
    grid = at_resolution(grid_of(s2.array), 60)
    group = group_pixels(s2, ["B01", "B09"], grid).values
    assert group.shape == (2, 38, 38)
    assert np.isnan(group[:, -1]).all() and np.isnan(group[:, :, -1]).all()
    tenths = s2.array.sel(band=["B01", "B09"]).values[:, :222, :222]
    means = tenths.reshape(2, 37, 6, 37, 6).mean(axis=(2, 4))
    np.testing.assert_allclose(group[:, :37, :37], means, rtol=1e-6)


def test_native_20m_bands_come_in_band_number_order_holding_their_own_values(
    copgen_model, tmp_path, monkeypatch
):
    """Issue 27 row 17: the native 20 m group came out as B05 B06 B07 B11 B12 B8A. It comes in
    band-number order (B8A in B08's place), as the registry and the merged outputs list them,
    and each band holds its own channel: decoding is replaced by "VAE channel i is (i + 1) / 10"
    (a reflectance inside the domain, which every output is clipped to)."""
    from geocopgen.translation import grouped

    def channel_numbers(key, y, dn_offset):
        tenths = torch.arange(1, y.shape[1] + 1, dtype=y.dtype) / 10
        return tenths.view(1, -1, 1, 1).expand_as(y)

    monkeypatch.setattr(grouped, "physical_from_model", channel_numbers)
    out = tmp_path / "l2a.tif"
    api.translate(terramind("S1RTC"), "s2l2a", model=copgen_model, output=out, steps=1, **QUIET)
    channels = slot("S2L2A_B05_B06_B07_B11_B12_B8A").bands  # the VAE's: ... B8A, B11, B12
    with rasterio.open(tmp_path / "l2a_20m.tif") as src:
        assert src.descriptions == ("B05", "B06", "B07", "B8A", "B11", "B12")
        for i, band in enumerate(src.descriptions, start=1):
            values = src.read(i)
            assert np.isfinite(values).any()
            tenth = (channels.index(band) + 1) / 10
            np.testing.assert_allclose(values[np.isfinite(values)], tenth, rtol=1e-6)


def test_sample_takes_steps_and_a_preset_from_python(copgen_model):
    """Issue 27 row 19: ``CopgenModel.sample(..., preset=...)`` raised "multiple values for
    keyword argument 'preset'"; ``steps=`` sets the model calls as ``--steps`` does."""
    from dataclasses import replace

    model = CopgenModel.from_pretrained(copgen_model)
    calls: list[int] = []

    def run(**kwargs):
        calls.clear()
        model.sample(["DEM_DEM"], batch_size=1, generator=torch.Generator().manual_seed(0),
                     on_call=lambda t, x: calls.append(1), **kwargs)  # fmt: skip
        return len(calls)

    assert run(steps=2) == 2
    assert run(preset=replace(model.preset, steps=3)) == 3
    assert run(preset=replace(model.preset, steps=3), steps=1) == 1


def test_steps_far_above_the_samplers_useful_range_warn_at_the_callers_line(
    copgen_model, monkeypatch
):
    """Issue 27 row 16: ``--steps 100000`` was accepted silently; above 200 model calls
    (4x the published preset's 50) a warning says so, naming the caller's line (row 20)."""
    from geocopgen.translation import grouped_output

    class Planned(Exception):
        pass

    def stop(*args, **kwargs):
        raise Planned

    monkeypatch.setattr(grouped_output, "run_grouped_into", stop)  # plan only, do not sample
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Planned):
            line = sys._getframe().f_lineno + 1
            api.translate(terramind("S2L2A"), "dem", model=copgen_model, steps=100000, **QUIET)
        with pytest.raises(Planned):
            api.translate(terramind("S2L2A"), "dem", model=copgen_model, steps=200, **QUIET)
    steps = [w for w in caught if "sampler steps" in str(w.message)]
    assert len(steps) == 1 and "100000 sampler steps" in str(steps[0].message)
    assert (steps[0].filename, steps[0].lineno) == (__file__, line)
    result = CliRunner().invoke(
        app, ["translate", str(terramind("S2L2A")), "--to", "dem", "-o", "unused.tif",
              "--model", str(copgen_model), "--date", "2021-07-15", "--steps", "100000"],
    )  # fmt: skip
    assert "geocopgen: warning: 100000 sampler steps is far above" in result.output


def test_copgen_outputs_follow_the_domain_rule_of_every_model(copgen_model, tmp_path):
    """Issue 24: a COP-GEN output is clipped to its modality's domain like a 4-modality one,
    counted in CLIPPED_TO_DOMAIN (each group's, summed in a merged output), warned about, and
    tagged with how its inputs were read. The fixture's random S2 decoders overshoot."""
    out = tmp_path / "l2a.tif"
    with pytest.warns(DomainWarning, match="clipped to it"):
        groups = api.translate(terramind("S1RTC"), "s2l2a", model=copgen_model, output=out,
                               grid="native", **FAST)  # fmt: skip
    low, high = np.float32(get_modality("s2l2a").domain)  # clipped in float32
    total = 0
    for key, array in groups.items():
        with rasterio.open(tmp_path / f"l2a_{slot(key).resolution:g}m.tif") as src:
            values, tags = src.read(), src.tags()
        assert np.nanmin(values) >= low and np.nanmax(values) <= high
        assert tags["S1_SCALE_OF_S1RTC"] == "db" and array.attrs["s1_scale_of_s1rtc"] == "db"
        total += int(tags["CLIPPED_TO_DOMAIN"])
    assert total > 0
    with pytest.warns(DomainWarning):
        merged = api.translate(terramind("S1RTC"), "s2l2a", model=copgen_model, grid="input",
                               **FAST)  # fmt: skip
    assert int(merged.attrs["clipped_to_domain"]) == total
    assert float(merged.min()) >= low and float(merged.max()) <= high


def test_each_group_file_is_checked_as_every_output_is(copgen_model, tmp_path):
    """Issue 24: a COP-GEN model's per-group files go through the one output check: one that
    is an input is refused even with overwrite (it was only refused when it existed), and a
    refusal leaves the input intact."""
    source = tmp_path / "l2a_10m.tif"
    shutil.copy(terramind("S1RTC"), source)
    before = source.read_bytes()
    with pytest.raises(OutputError, match="is the input itself"):
        api.translate(source, "s2l2a", modality="s1rtc", model=copgen_model, grid="native",
                      output=tmp_path / "l2a.tif", overwrite=True, **FAST)  # fmt: skip
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l2a_10m.tif"]
