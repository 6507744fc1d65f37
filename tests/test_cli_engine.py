"""``geocopgen info`` and ``geocopgen roundtrip``: outputs, exit codes, interrupts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import MAJORTOM_0U, leftovers, terramind
from typer.testing import CliRunner

import geocopgen.cli.engine as engine
from geocopgen.cli import app
from geocopgen.io import open_raster

runner = CliRunner()
EXAMPLE = Path(__file__).parents[1] / "examples/data/terramind/S2L2A/38D_378R_2_3.tif"


def test_info_json_on_a_major_tom_folder():
    result = runner.invoke(app, ["info", str(MAJORTOM_0U), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["modality"] == "s2l2a" and facts["detected_by"] == "band names"
    assert facts["s2_offset"] == -1000 and "N0400" in facts["s2_offset_evidence"]
    assert facts["crs"] == "EPSG:32633" and (facts["width"], facts["height"]) == (1068, 1068)
    assert facts["resampled"]["B01"] == "bilinear" and "B02" not in facts["resampled"]
    assert facts["bands"][:3] == ["B01", "B02", "B03"]


def test_info_text():
    result = runner.invoke(app, ["info", str(terramind("DEM"))])
    assert result.exit_code == 0
    assert "modality" in result.stdout and "dem" in result.stdout
    assert "EPSG:32736" in result.stdout


def test_roundtrip_the_readme_example(tmp_path):
    out = tmp_path / "out" / "roundtrip.tif"
    result = runner.invoke(app, ["roundtrip", str(EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    np.testing.assert_array_equal(open_raster(out).values, open_raster(EXAMPLE).values)
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert json.loads(info.stdout)["detected_by"] == "MODALITY tag"


def test_roundtrip_native_and_cog(tmp_path):
    out = tmp_path / "dem30.tif"
    args = ["-q", "roundtrip", str(terramind("DEM")), "-o", str(out), "--native", "--cog"]
    result = runner.invoke(app, [*args, "--chip-size", "128", "--overlap", "16"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # --quiet
    with rasterio.open(out) as dst:
        assert dst.res == (30.0, 30.0) and dst.shape == (75, 75)
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


@pytest.mark.parametrize(
    "args",
    [
        ["roundtrip", "IN", "-o", "OUT", "--modality", "landsat"],
        ["roundtrip", "IN", "-o", "OUT", "--overlap", "200"],
        ["roundtrip", "IN", "-o", "OUT", "--chip-size", "8"],
        ["roundtrip", "IN", "-o", "OUT", "--s1-scale", "decibel"],
        ["roundtrip", "IN"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    args = [{"IN": str(terramind("DEM")), "OUT": str(tmp_path / "o.tif")}.get(a, a) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert leftovers(tmp_path) == []


def test_ctrl_c_leaves_nothing_and_exits_130(tmp_path, monkeypatch):
    def interrupted(data, chip):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "identity", interrupted)
    args = ["roundtrip", str(terramind("DEM")), "-o", str(tmp_path / "o.tif"), "--chip-size", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert "interrupted" in result.output and "no output" in result.output
    assert leftovers(tmp_path) == []


def test_console_script_error_is_one_line(tmp_path):
    """The installed entry point: one line on stderr, exit 1, no traceback."""
    bad = tmp_path / "landsat.tif"
    bad.write_bytes((Path(terramind("DEM"))).read_bytes()[:100])
    cmd = [sys.executable, "-c", "from geocopgen.cli import main; main()", "info", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "landsat.tif" in lines[0]
