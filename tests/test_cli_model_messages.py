"""What the CLI says about models and places before any work (issue 27, rows 13, 14 and 20):
``info`` reads what a model can do from its configs without loading weights and says when an
input holds no data; a missing model folder is refused before anything is created, with the
command that makes it; messages speak the surface's own words; a bbox names the value that is
out of range."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _translate_fixtures import save_tiny
from conftest import DATA, terramind
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import CheckpointError, GridError

ROOT = Path(__file__).parents[1]


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_info_reads_the_model_from_its_configs_without_loading_torch():
    """``info`` took 6-15 s because it loaded the model; now torch is not even imported, and the
    answer read from ``pipeline.json`` is the loaded model's."""
    code = (
        "import sys; from geocopgen.cli import app\n"
        f"app(['info', {str(terramind('DEM'))!r}], standalone_mode=False)\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "torch imported: False" in run.stdout
    assert "can translate it to: s2l2a, s2l1c, s1rtc, lulc, cloud_mask" in run.stdout
    from geocopgen.api import _copgen_capabilities, load_model

    loaded = _copgen_capabilities(load_model("default").encodable, "dem", "default (bundled)")
    assert api.capabilities("dem") == loaded


def _all_nodata(source: Path, target: Path, fill: float | None = None) -> Path:
    """``source`` with every pixel nodata (its declared value, or NaN as float32)."""
    with rasterio.open(source) as src:
        profile = src.profile
        if fill is not None:
            profile.update(dtype="float32", nodata=fill)
        value = profile["nodata"]
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(np.full((src.count, src.height, src.width), value, dtype=profile["dtype"]))
    return target


@pytest.mark.parametrize("fill", [None, float("nan")], ids=["nodata", "nan"])
def test_info_on_an_input_without_valid_pixels_says_so(tmp_path, fill):
    path = _all_nodata(DATA / "dem" / "rome_30m_egm96.tif", tmp_path / "dem.tif", fill)
    result = cli("info", path)
    assert result.exit_code == 0, result.output
    assert "valid_pixels        False" in result.output
    assert "can translate it to: nothing (every pixel is nodata or NaN" in result.output
    assert "e.g.:" not in result.output
    facts = json.loads(cli("info", path, "--json").stdout)
    assert facts["valid_pixels"] is False and facts["model"]["can_translate_to"] == []
    assert json.loads(cli("info", terramind("DEM"), "--json").stdout)["valid_pixels"] is True


def test_info_names_the_cli_flag_that_overrides_a_guess():
    """The S2 offset evidence said "override with offset=" (Python's keyword) on the CLI."""
    result = cli("info", terramind("S2L1C", "609U_541L_3_0"))
    line = next(x for x in result.stdout.splitlines() if x.startswith("s2_offset_evidence"))
    assert line.endswith("no evidence; assumed 0 (override with --s2-offset)")


def test_a_missing_model_folder_creates_nothing_and_says_how_to_make_it(tmp_path, monkeypatch):
    """``--model copgen-base`` before converting created the output folder, then failed with no
    hint; now nothing is created and the message gives the command that makes the folder."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "dem.tif"
    result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", out,
                 "--model", "copgen-base")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "copgen-base: no such model folder" in result.output
    assert "`geocopgen convert copgen --hub -o copgen-base`" in result.output
    assert "--model default" in result.output and "model='default'" not in result.output
    assert not (tmp_path / "runs").exists()
    generate = cli("generate", "--to", "dem", "--cell", "433U_1171R", "-o", out,
                   "--model", "copgen-base")  # fmt: skip
    assert generate.exit_code == 1 and not (tmp_path / "runs").exists()
    with pytest.raises(CheckpointError, match="model='default'"):
        api.translate(terramind("S2L2A"), "dem", model="copgen-base", output=out)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("bbox", "reason"),
    [
        ("200,95,210,99", "longitude 200 is outside [-180, 180] degrees"),
        ("10,95,11,96", "latitude 95 is outside [-90, 90] degrees"),
        ("11,45,10,46", "west 11 is not less than east 10"),
    ],
)
def test_a_bbox_names_the_value_out_of_range_before_the_order(tmp_path, bbox, reason):
    result = cli("generate", "--to", "dem", "--bbox", bbox, "-o", tmp_path / "x.tif")
    assert result.exit_code == 2 and reason in result.output, result.output
    with pytest.raises(GridError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        api.grid_for(bbox=[float(v) for v in bbox.split(",")])


def test_a_library_log_line_is_printed_once():
    """Issue 27 row 12: huggingface_hub's retry lines came out twice, from its own handler and
    again from geocopgen's root handler; a record a library's handler printed is not repeated,
    and one without a handler of its own is still shown, once."""
    code = (
        "import logging; from geocopgen.cli._common import configure\n"
        "configure(False, 0)\n"
        "own = logging.getLogger('somelib.http'); logging.getLogger('somelib').addHandler("
        "logging.StreamHandler())\n"
        "own.warning('Retrying in 1s'); logging.getLogger('bare').warning('no handler')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)  # fmt: skip
    assert run.stderr.splitlines() == ["Retrying in 1s", "geocopgen: no handler"], run.stderr


def test_a_4_modality_pipeline_warns_about_steps_too(tmp_path, monkeypatch):
    """Row 16 for the other model kind: its scheduler is DPM-Solver++ as well."""
    from geocopgen.translation import CanvasTranslator

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CanvasTranslator, "plan", stop)  # warn, then stop before sampling
    tiny = save_tiny(tmp_path / "tiny")
    with pytest.warns(UserWarning, match="100000 sampler steps") as caught, pytest.raises(
        KeyboardInterrupt
    ):
        api.translate(terramind("S2L2A"), "dem", model=tiny, steps=100000, progress=False)
    steps = [w for w in caught if "sampler steps" in str(w.message)]
    assert len(steps) == 1 and steps[0].filename == __file__
