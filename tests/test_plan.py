"""A translation is planned once and flows in a straight line: each input file is opened once,
nothing is written for an in-memory result, and user errors come before the model loads."""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import rasterio
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import VIRGINIA, terramind
from typer.testing import CliRunner

import geocopgen.io.raster_source as source_module
from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import ConfigError, OutputError, UnreadableInputError
from geocopgen.options import ReadOptions, TranslateOptions, WriteOptions, split_options

FAST = {"steps": 1, "progress": False}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def opened(monkeypatch):
    """Counts ``rasterio.open`` calls by path and mode, through geocopgen's one opener."""
    calls: collections.Counter = collections.Counter()
    real = rasterio.open

    def counting(fp, mode="r", *args, **kwargs):
        calls[(str(fp), mode)] += 1
        return real(fp, mode, *args, **kwargs)

    monkeypatch.setattr(source_module.rasterio, "open", counting)
    return calls


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the user error was found")

    monkeypatch.setattr(api, "load_model", refuse)


def test_each_input_file_is_opened_once(tiny, opened):
    api.translate(terramind("S2L2A"), "dem", model=tiny, **FAST)
    assert opened == {(str(terramind("S2L2A")), "r"): 1}


def test_each_band_file_of_a_folder_is_opened_once(tiny, opened):
    scene = api.open_inputs(VIRGINIA)["s2l1c"].array.isel(x=slice(0, 300), y=slice(0, 300))
    api.translate(scene, "dem", model=tiny, **FAST)
    assert set(opened.values()) == {1}
    assert len(opened) == 13


def test_in_memory_result_writes_no_file(tiny, opened, monkeypatch):
    made = []
    for name in ("mkstemp", "TemporaryDirectory", "TemporaryFile", "NamedTemporaryFile"):
        real = getattr(tempfile, name)
        monkeypatch.setattr(
            tempfile, name, lambda *a, _real=real, **k: made.append(a) or _real(*a, **k)
        )
    result = api.translate(terramind("S2L2A"), "dem", model=tiny, **FAST)
    assert made == []
    assert all(mode == "r" for _, mode in opened)
    assert result.attrs["source"] == "memory"
    assert result.rio.crs is not None


@pytest.mark.parametrize("grid", ["input", "native"])
def test_memory_and_file_are_two_sinks_of_one_mosaic(tiny, tmp_path, grid):
    memory = api.translate(terramind("S2L2A"), "dem", model=tiny, grid=grid, **FAST)
    written = api.translate(
        terramind("S2L2A"), "dem", model=tiny, grid=grid, output=tmp_path / "d.tif", **FAST
    )
    np.testing.assert_array_equal(memory.values, written.values)
    assert memory.rio.transform() == written.rio.transform()
    assert memory.rio.crs == written.rio.crs
    with rasterio.open(tmp_path / "d.tif") as src:
        assert src.transform == memory.rio.transform()
        assert (src.height, src.width) == memory.shape[1:]


def test_samples_result_in_memory_keeps_its_bands(tiny):
    result = api.translate(terramind("S2L2A"), "dem", model=tiny, samples=2, **FAST)
    assert [str(b) for b in result["band"].values] == ["elevation", "elevation_std"]
    assert result.attrs["samples"] == "2"


def test_missing_input_fails_before_the_model_loads(no_model):
    with pytest.raises(UnreadableInputError, match="nonexistent"):
        api.translate("/nonexistent.tif", "dem", **FAST)


def test_unwritable_output_fails_before_the_model_loads(no_model, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        api.translate(terramind("S2L2A"), "dem", output=tmp_path, **FAST)
    existing = tmp_path / "dem.tif"
    existing.write_bytes(b"")
    with pytest.raises(OutputError, match="exists"):
        api.translate(terramind("S2L2A"), "dem", output=existing, **FAST)


def test_cli_errors_come_before_the_model(no_model, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["translate", "/nonexistent.tif", "--to", "dem", "-o", "x.tif"])
    assert missing.exit_code == 1
    assert "nonexistent" in missing.output


def test_the_api_module_does_not_import_torch():
    code = "import sys, geocopgen.api; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_options_are_sorted_into_values_once():
    reading, sampling, writing = split_options(
        {"steps": 3, "s2_offset": 0, "cog": True, "sampling": TranslateOptions(seed=7)},
        writing={"path": "x.tif"},
    )
    assert reading == ReadOptions(s2_offset=0)
    assert sampling == TranslateOptions(steps=3, seed=7)
    assert writing.cog and str(writing.path) == "x.tif"
    with pytest.raises(ConfigError, match="unknown option 'stepz'"):
        split_options({"stepz": 3})
    with pytest.raises(ConfigError, match="s2_offset"):
        ReadOptions(s2_offset=5)
    with pytest.raises(ConfigError, match="output path"):
        WriteOptions(cog=True)


def test_one_rule_feeds_partly_invalid_pixels_to_every_autoencoder():
    """Training crops, the latent store and translation normalise the same way: an invalid
    value becomes the band centre (0) and the pixel's valid bands are kept."""
    from geocopgen.latents.encode import Place, _Batch, _read_batch
    from geocopgen.modalities import get_modality
    from geocopgen.training.autoencoder import RasterCrops

    s2 = get_modality("s2l2a")
    tile = api.open_inputs(terramind("S2L2A"))["s2l2a"].array.values.astype(np.float32)
    tile[3, 10:20, 10:20] = np.nan  # one band missing over a patch: partly invalid pixels
    expected = s2.model_input(tile.copy())
    assert np.all(expected[3, 10:20, 10:20] == 0) and np.all(expected[2, 10:20, 10:20] != 0)
    np.testing.assert_array_equal(
        expected[:, 10:20, 10:20],
        np.where(np.isfinite(tile), s2.normalize(tile), 0)[:, 10:20, 10:20].astype(np.float32),
    )

    array = api.open_inputs(terramind("S2L2A"))["s2l2a"].array.copy(data=tile)
    crops = RasterCrops([array], s2, 224, augment=False)
    item = crops.item(*crops.read(0, 0, 0), augment=False)
    np.testing.assert_array_equal(item["x"].numpy(), expected)

    place = Place("p", {"s2l2a": array})
    stored, _ = _read_batch(_Batch(place, [0], [(0, 0)], 224), ["s2l2a"])
    np.testing.assert_array_equal(stored["s2l2a"][0], expected)
