"""``geocopgen translate``, ``generate`` and ``info`` end to end with the bundled model on the
shared rasters: exact grids and nodata, reproducibility, uncertainty bands, exit codes.

The bundled model is a COP-GEN model whose default output grid is the input's: every generated
resolution group resampled there, one file; ``--native`` writes the DEM at 30 m."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _translate_fixtures import BUNDLED, grid_facts, one_torch_thread, save_tiny  # noqa: F401
from conftest import MAJORTOM_0U, leftovers, terramind, write_variant
from typer.testing import CliRunner

from geocopgen.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()
STEPS = ["--steps", "4", "--device", "cpu"]


def cli(*args: object):
    return runner.invoke(app, ["-q", *map(str, args)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _input_facts(path: Path) -> tuple:
    with rasterio.open(path) as src:
        return (src.crs, src.transform, src.width, src.height)


def test_translate_s2_to_dem_keeps_the_grid_and_is_reproducible(tmp_path):
    outs = [tmp_path / f"dem{k}.tif" for k in range(3)]
    for out, seed in zip(outs, (0, 0, 1), strict=True):
        result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", out, "--seed", seed,
                     *STEPS)  # fmt: skip
        assert result.exit_code == 0, result.output
    crs, transform, width, height, nodata = grid_facts(outs[0])
    assert (crs, transform, width, height) == _input_facts(terramind("S2L2A"))
    assert np.isnan(nodata)
    a, b, c = (rasterio.open(p).read(1) for p in outs)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.isfinite(a).all() and (a > 0).all()
    with rasterio.open(outs[0]) as src:
        assert src.tags()["MODEL"] == "default (bundled)"
        assert "4 model calls" in src.tags()["SAMPLER"]
        assert src.units == ("m",) and src.descriptions == ("elevation",)


def test_two_conditions_samples_native_and_cog(tmp_path):
    out = tmp_path / "dem.tif"
    result = cli("translate", terramind("S2L2A"), "--cond", f"s1rtc={terramind('S1RTC')}",
                 "--to", "dem", "-o", out, "--samples", 3, "--native", "--cog", *STEPS)  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert src.descriptions == ("elevation", "elevation_std") and src.count == 2
        assert src.res == (30.0, 30.0) and (src.width, src.height) == (75, 75)
        s2 = _input_facts(terramind("S2L2A"))
        assert src.crs == s2[0] and (src.transform.c, src.transform.f) == (s2[1].c, s2[1].f)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert "s1rtc=" in src.tags()["CONDITIONS"] and src.tags()["SAMPLES"] == "3"
        mean, std = src.read()
    assert np.isfinite(mean).all() and (std >= 0).all() and std.mean() > 0
    assert leftovers(tmp_path) == [out]


def test_s2_offset_reaches_the_cond_rasters(tmp_path, tiny):
    """--s2-offset applies to a Sentinel-2 --cond raster, not only to FILE (here Sentinel-1)."""
    outs = {}
    for offset in (0, -1000):
        out = outs[offset] = tmp_path / f"dem{offset}.tif"
        result = cli("translate", terramind("S1RTC"), "--cond", f"s2l2a={terramind('S2L2A')}",
                     "--to", "dem", "-o", out, "--s2-offset", offset,
                     "--model", tiny, "--steps", 2, "--device", "cpu")  # fmt: skip
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as src:
            assert src.tags()["S2_OFFSET_OF_S2L2A"] == str(offset)
    a, b = (rasterio.open(p).read(1) for p in outs.values())
    assert not np.allclose(a, b)  # 1000 DN more reflectance changed the condition
    result = cli("generate", "--to", "dem", "--cond", f"s2l2a={terramind('S2L2A')}",
                 "--s2-offset", 0, "-o", tmp_path / "g.tif", "--model", tiny, "--steps", 2,
                 "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "g.tif") as src:
        assert src.tags()["S2_OFFSET_OF_S2L2A"] == "0"


def test_s1_scale_reaches_the_cond_rasters(tmp_path, tiny):
    """--s1-scale applies to a Sentinel-1 --cond raster: the file in linear power, read as
    linear, translates as the dB original does; read as dB, it does not."""
    linear = write_variant(terramind("S1RTC"), tmp_path / "s1_linear.tif",
                           data=lambda db: 10 ** (db / 10))  # fmt: skip
    outs = {}
    for name, s1, scale in [("orig", terramind("S1RTC"), "db"), ("linear", linear, "linear"),
                            ("as_db", linear, "db")]:  # fmt: skip
        out = outs[name] = tmp_path / f"dem_{name}.tif"
        result = cli("translate", terramind("S2L2A"), "--cond", f"s1rtc={s1}", "--to", "dem",
                     "-o", out, "--s1-scale", scale, "--model", tiny, "--steps", 2,
                     "--device", "cpu")  # fmt: skip
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as src:
            assert src.tags()["S1_SCALE_OF_S1RTC"] == ("db" if name == "as_db" else scale)
    orig, lin, as_db = (rasterio.open(p).read(1) for p in outs.values())
    same, changed = np.abs(lin - orig).max(), np.abs(as_db - orig).max()
    assert changed > 100 * same  # the tiny test model leans little on S1, but it does


def test_generate_on_a_major_tom_cell_matches_the_real_products_grid(tmp_path):
    """Unconditional Sentinel-2 on a Major TOM cell: the three groups resampled onto the cell's
    10 m grid, one 12-band file on the grid of the real product's 10 m band files."""
    out = tmp_path / "s2.tif"
    result = cli("generate", "--to", "s2l2a", "--cell", "0U_199R", "-o", out, "--steps", 2,
                 "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(MAJORTOM_0U / "B02.tif") as real, rasterio.open(out) as made:
        assert made.crs == real.crs and made.shape == real.shape == (1068, 1068)
        assert made.transform.almost_equals(real.transform, precision=1e-6)
        assert made.count == 12 and made.tags()["CONDITIONS"] == "none (unconditional)"
        assert made.descriptions[:4] == ("B01", "B02", "B03", "B04")
        assert made.units[1] == "reflectance"
    assert leftovers(tmp_path) == [out]


def test_info_says_what_the_model_can_do(tmp_path):
    result = cli("info", terramind("S1RTC"))
    assert result.exit_code == 0, result.output
    assert "can translate it to: s2l2a, s2l1c, dem, lulc, cloud_mask" in result.stdout
    assert "geocopgen translate" in result.stdout and "EPSG:32736" in result.stdout
    facts = json.loads(cli("info", terramind("S2L1C"), "--json").stdout)
    assert facts["modality"] == "s2l1c"
    assert facts["model"]["can_translate_to"] == ["s2l2a", "s1rtc", "dem", "lulc", "cloud_mask"]
    assert facts["model"]["model_modalities"] == [
        "s2l2a", "s2l1c", "s1rtc", "dem", "lulc", "cloud_mask"
    ]  # fmt: skip


# --- errors and exit codes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["translate", "IN", "-o", "x.tif"],  # no --to
        ["translate", "IN", "--to", "lidar", "-o", "x.tif"],  # unknown modality
        ["translate", "IN", "--to", "dem", "-o", "x.tif", "--cond", "s1rtc"],  # no =FILE
        ["translate", "--to", "dem", "-o", "x.tif"],  # no input at all
        ["generate", "--to", "dem", "-o", "x.tif"],  # no place
        ["generate", "--to", "dem", "-o", "x.tif", "--cell", "1U_1R", "--bbox", "0,0,1,1"],
        ["generate", "--to", "dem", "-o", "x.tif", "--bbox", "0,0,1"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    args = [str(terramind("S2L2A")) if a == "IN" else a for a in args]
    args = [str(tmp_path / a) if a.endswith(".tif") and "/" not in a else a for a in args]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert leftovers(tmp_path) == []


def test_errors_are_one_line_and_exit_1(tmp_path, tiny):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    cases = [
        (["translate", terramind("DEM"), "--to", "dem", "-o", tmp_path / "a.tif"], "already"),
        (["translate", terramind("S2L2A"), "--to", "dem", "-o", blocker / "a.tif"], "Error"),
        (["translate", terramind("S2L2A"), "--to", "dem", "-o", tmp_path / "a.tif",
          "--model", tmp_path / "nowhere"], "no such model folder"),
        (["translate", terramind("S2L2A"), "--to", "dem", "-o", tmp_path / "a.tif",
          "--cond", f"s1rtc={terramind('S1RTC', place='637U_59R_1_3')}"], "does not overlap"),
    ]  # fmt: skip
    for args, words in cases:
        result = cli(*args, "--model", tiny, "--steps", 1) if "--model" not in args else cli(*args)
        assert result.exit_code == 1, result.output
        assert words in result.output and "Traceback" not in result.output
        assert result.output.strip().startswith("Error:") and len(result.stderr.splitlines()) == 1
    no_crs = write_variant(terramind("S2L2A"), tmp_path / "nocrs.tif", crs=None)
    result = cli("translate", no_crs, "--to", "dem", "-o", tmp_path / "b.tif", "--model", tiny)
    assert result.exit_code == 1 and "coordinate reference system" in result.output
    assert leftovers(tmp_path) == [blocker, no_crs]


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path, tiny, monkeypatch):
    import geocopgen.translation.translator as translator

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(translator, "denoise_canvas", interrupted)
    result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", tmp_path / "x.tif",
                 "--model", tiny)  # fmt: skip
    assert result.exit_code == 130
    assert "interrupted; no output was written" in result.output
    assert leftovers(tmp_path) == []


def _rotated(path: Path, tmp_path: Path) -> Path:
    with rasterio.open(path) as src:
        t = src.transform
    return write_variant(
        path, tmp_path / "S2L2A_rotated.tif", transform=t @ rasterio.Affine.rotation(10)
    )


@pytest.mark.parametrize(
    "case, error",
    [
        ("rotated", "rotated"),
        ("truncated", "truncated or corrupt"),
        ("band count", "needs 2 bands"),
        ("undeclared NaN", "contains NaN"),
        ("all nodata", "nothing to translate"),
    ],
)
def test_the_engines_bad_inputs_through_translate(tmp_path, tiny, case, error):
    """Each is refused with one line naming the file, exit 1, nothing written."""
    from conftest import truncated_copy

    src = terramind("S2L2A")
    extra: list[object] = []
    if case == "rotated":
        bad = _rotated(src, tmp_path)
    elif case == "truncated":
        bad = truncated_copy(src, tmp_path / "S2L2A_cut.tif")
    elif case == "band count":
        bad, extra = src, ["--modality", "s1rtc"]
    else:
        fill = np.nan if case == "undeclared NaN" else -9999
        bad = write_variant(src, tmp_path / "S2L2A_bad.tif", nodata=None if np.isnan(fill) else
                            fill, data=lambda v: np.full(v.shape, fill, np.float32))  # fmt: skip
    out_dir = tmp_path / "out"
    result = cli("translate", bad, "--to", "dem", "-o", out_dir / "x.tif", "--model", tiny, *extra)
    assert result.exit_code == 1, result.output
    assert error in result.output and bad.name in result.output
    assert "Traceback" not in result.output
    assert not out_dir.exists() or leftovers(out_dir) == []


def test_grid_chooses_the_output_grid_and_must_agree_with_native(tmp_path):
    out = tmp_path / "dem.tif"
    result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", out, "--grid", "native",
                 "--steps", 2, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src, rasterio.open(terramind("S2L2A")) as s2:
        assert src.res == (30.0, 30.0) and src.shape == (75, 75) and src.crs == s2.crs
        assert (src.transform.c, src.transform.f) == (s2.transform.c, s2.transform.f)
    clash = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", tmp_path / "x.tif",
                "--grid", "input", "--native")  # fmt: skip
    assert clash.exit_code == 2 and "--native and --grid input disagree" in clash.output
    assert not (tmp_path / "x.tif").exists()
