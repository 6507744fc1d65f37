"""Inputs a new user has at hand are recognised (issue 14, items 5 and 6): band files named
without zero padding or with product prefixes and suffixes, and a two-band float raster of dB
backscatter saved as ``s1.tif``; what cannot be recognised is refused with the right counts."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import EXPLORADORES, VIRGINIA, terramind, write_variant
from typer.testing import CliRunner

import geocopgen
from geocopgen.cli import app
from geocopgen.errors import GeoCopGenWarning, UnknownModalityError
from geocopgen.io import open_raster
from geocopgen.modalities import get_modality

runner = CliRunner()
L1C = get_modality("s2l1c").band_names


def _band_folder(folder: Path, name: str) -> Path:
    """The Virginia L1C bands as ``name.format(band)`` links (``B02`` → ``B2`` when unpadded)."""
    folder.mkdir()
    for band in L1C:
        short = band if band.startswith("B1") or band == "B8A" else band.replace("B0", "B")
        spelled = name.format(band=band, short=short, lower=band.lower())
        (folder / spelled).symlink_to(VIRGINIA / f"{band}.tif")
    return folder


@pytest.mark.parametrize(
    "name",
    [
        "{short}.tif",
        "{lower}.tif",
        "T18SUJ_20160710T155912_{band}_10m.jp2",
        "S2A_MSIL1C_x_{band}.tif",
    ],
    ids=["SSL4EO B1", "lower case", "SAFE suffix", "product prefix"],
)
def test_band_file_spellings_are_recognised_by_info(tmp_path, name):
    folder = _band_folder(tmp_path / "product", name)
    result = runner.invoke(app, ["info", str(folder), "--json", "--model", "nowhere"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["modality"] == "s2l1c" and facts["bands"] == list(L1C)


def test_an_incomplete_band_folder_is_counted_right(tmp_path):
    folder = tmp_path / "part"
    folder.mkdir()
    for band in ("B8A", "B10", "B11", "B12"):
        (folder / f"{band}.tif").symlink_to(VIRGINIA / f"{band}.tif")
    (folder / "blue.tif").symlink_to(VIRGINIA / "B02.tif")
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 1
    assert "its 4 band files are (B10, B11, B12, B8A)" in result.output
    assert "1 raster file(s) have no band name geocopgen recognises (blue.tif)" in result.output
    stated = runner.invoke(app, ["info", str(folder), "-m", "s2l1c"])
    assert stated.exit_code == 1 and "of its 5 raster files, none holds B01, B02" in stated.output


def test_the_python_guide_s_s1_example_runs_on_a_db_raster_named_s1_tif(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(terramind("S1RTC"), "s1.tif")  # 2 float bands, dB, no names or path words
    with pytest.warns(GeoCopGenWarning, match=r"s1\.tif: taken as Sentinel-1 RTC .* values"):
        latents = geocopgen.encode("s1.tif", model=save_tiny(tmp_path / "m"), device="cpu",
                                   progress=False)  # fmt: skip
    assert latents.attrs["modality"] == "s1rtc" and latents.dims == ("latent", "y", "x")


def test_two_float_bands_that_are_not_db_are_still_refused(tmp_path):
    heights = write_variant(
        EXPLORADORES,
        tmp_path / "two.tif",
        data=lambda v: np.concatenate([v, v]).astype(np.float32),
    )
    with pytest.raises(UnknownModalityError, match="cannot tell"), warnings.catch_warnings():
        warnings.simplefilter("error", GeoCopGenWarning)
        open_raster(heights)
