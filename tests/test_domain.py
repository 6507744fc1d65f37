"""Decoded outputs stay physically possible: values outside a modality's domain are clipped and
counted in the ``CLIPPED_TO_DOMAIN`` tag, and a non-zero count is reported on stderr."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _translate_fixtures import one_torch_thread  # noqa: F401
from conftest import terramind
from typer.testing import CliRunner

import geocopgen
from geocopgen.cli import app
from geocopgen.domain import DomainGuard, DomainWarning, clip_to_domain
from geocopgen.modalities import MODALITIES, get_modality
from geocopgen.raster.chips import ChipGrid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

README_EXAMPLE = Path(__file__).parents[1] / "examples/data/terramind/S2L2A/38D_378R_2_3.tif"


def test_every_modality_states_its_physical_domain():
    domains = {name: m.domain for name, m in MODALITIES.items()}
    assert domains["dem"] == (-500.0, 9000.0)  # the Dead Sea shore to Everest, with a margin
    assert domains["s2l1c"][0] == domains["s2l2a"][0] == 0.0  # no negative reflectance
    assert domains["s1rtc"][0] < -22 < 0 < domains["s1rtc"][1]  # the IW noise floor inside


def test_the_readme_example_s_dem_is_in_range_by_construction(tmp_path):
    """The bundled model decodes the DEM through COP-GEN's log codec: every height lies in
    [0, 8847] m by construction, so nothing is clipped (the previous model had to clip pixels
    kilometres below sea level on this tile); the tag says 0, as every output's does."""
    out = tmp_path / "dem.tif"
    result = CliRunner().invoke(
        app, ["translate", str(README_EXAMPLE), "--to", "dem", "-o", str(out), "--device", "cpu",
              "--steps", "8"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        tags = src.tags()
        values = src.read(1)
    assert tags["CLIPPED_TO_DOMAIN"] == "0" and tags["LIMIT_DEM_AT_FLOOR_0M"] == "0"
    assert tags["S2_OFFSET_OF_S2L2A"] == "0"  # how the input was read, as every model records
    assert np.nanmin(values) >= 0.0 and np.nanmax(values) <= 8847.5
    assert "CLIPPED_TO_DOMAIN" not in result.stderr


def test_translated_reflectance_is_never_negative():
    """S1 → S2 L2A with the bundled model: its Sentinel-2 codecs decode by squaring, so no
    reflectance is negative, without any clipping (the domain rule runs and counts 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DomainWarning)
        s2 = geocopgen.translate(terramind("S1RTC"), "s2l2a", device="cpu", progress=False,
                                 steps=8)  # fmt: skip
    assert s2.attrs["clipped_to_domain"] == "0"
    assert float(s2.min()) >= 0.0 and s2.attrs["limit_s2_below_0"] == "0"


def test_a_pixel_decoded_by_several_chips_counts_once():
    chips = ChipGrid(100, 130, chip_size=64, overlap=32)
    guard = DomainGuard("dem", chips)
    for chip in chips:
        h, w = int(chip.window.height), int(chip.window.width)
        decoded = np.full((2, 1, h, w), -12_000.0, np.float32)  # two samples, all impossible
        guard.clip(chip, decoded)
        assert (decoded == -500.0).all()
    assert guard.clipped == guard.values == 2 * 100 * 130


def test_clipping_keeps_nan_and_counts_only_finite_values_outside():
    values = np.array([[-0.2, 0.1, np.nan, 1.7, 0.5]], np.float32)
    assert clip_to_domain(values, get_modality("s2l2a")) == 2
    np.testing.assert_array_equal(values, np.float32([[0.0, 0.1, np.nan, 1.6, 0.5]]))
