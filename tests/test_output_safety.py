"""What a new user hit with outputs (issue 27): a full disk is one line, two runs to one new name
do not silently replace each other, a name that is not .tif is refused, a failed run removes the
folders it made, and a killed run's temporary file is removed by the next run to that output."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import leftovers, terramind
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import NoValidDataError, OutputError, OutputExistsError
from geocopgen.io import open_raster
from geocopgen.outputs import remove_stale
from geocopgen.raster.mosaic import apply_chipwise, identity

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).parents[1]
runner = CliRunner()
ENOSPC_LINE = "no space left on device; free some space or choose another location."


def cli(*args: object):
    return runner.invoke(app, ["-q", *map(str, args)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def nearly_full(tmp_path) -> Iterator[Path]:
    """A 200 kB tmpfs with 8 kB left (root only: elsewhere the test is skipped)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (folder / "filler").write_bytes(b"\0" * 190_000)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --- row 2: a full disk ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra", [(), ("--native",), ("--cog",)], ids=["input-grid", "native", "cog"]
)
def test_a_full_disk_is_one_line_naming_the_output(nearly_full, tiny, extra):
    out = nearly_full / "dem.tif"
    result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", out, "--model", tiny,
                 "--steps", 1, "--device", "cpu", *extra)  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == f"Error: cannot write {out}: {ENOSPC_LINE}"
    assert result.stderr.count("Error:") == 1
    assert leftovers(nearly_full) == [nearly_full / "filler"]


def test_a_full_disk_through_the_api(nearly_full):
    out = nearly_full / "s2.tif"
    with pytest.raises(OutputError, match=re.escape(f"{out}: no space left on device")):
        apply_chipwise(open_raster(terramind("S2L2A")), identity, out, progress=False)
    assert leftovers(nearly_full) == [nearly_full / "filler"]


# --- row 3: two runs to one new output -----------------------------------------------------------
def test_the_later_of_two_runs_to_one_new_output_is_refused(tmp_path):
    """While one run works, another finishes the same new output; the first must not replace it
    when it finishes (no --overwrite), and says so."""
    dem = open_raster(terramind("DEM"))
    out = tmp_path / "dem.tif"
    other: list[Path] = []

    def meanwhile_another_run(data: np.ndarray, chip) -> np.ndarray:
        if not other:
            other.append(apply_chipwise(dem, identity, out, progress=False))
        return data + 1

    with pytest.raises(OutputExistsError, match=r"dem\.tif exists"):
        apply_chipwise(dem, meanwhile_another_run, out, progress=False)
    with rasterio.open(out) as src, rasterio.open(terramind("DEM")) as raw:
        assert np.array_equal(src.read(1), raw.read(1).astype(np.float32))  # the other's, intact
    assert leftovers(tmp_path) == [out]


# --- row 4: extensions -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.png", "out.nc", "out.JPG"])
def test_an_output_named_for_another_format_is_refused(tmp_path, name):
    out = tmp_path / "new" / name
    result = cli("translate", terramind("S2L2A"), "--to", "dem", "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"Error: {out}: geocopgen writes GeoTIFF (or COG with --cog), not {Path(name).suffix}; "
        "name the output with .tif or .tiff, and convert it afterwards (gdal_translate) if you "
        "need another format."
    ]
    with pytest.raises(OutputError, match="writes GeoTIFF"):
        api.translate(terramind("S2L2A"), "dem", output=out)
    assert leftovers(tmp_path) == [] and not (tmp_path / "new").exists()


def test_tif_and_tiff_in_any_case_are_geotiff(tmp_path):
    for name in ("a.tif", "b.TIFF"):
        result = cli("roundtrip", terramind("DEM"), "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    assert leftovers(tmp_path) == [tmp_path / "a.tif", tmp_path / "b.TIFF"]


# --- row 6: only what the run created is removed -----------------------------------------------
def test_a_failed_run_removes_the_folders_it_created_and_only_those(tmp_path, tiny):
    kept = tmp_path / "existing"
    kept.mkdir()
    out = kept / "new" / "deeper" / "dem.tif"
    all_nodata = tmp_path / "nodata.tif"
    with rasterio.open(terramind("S2L2A")) as src:
        profile, shape = src.profile, (src.count, src.height, src.width)
    with rasterio.open(all_nodata, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(np.zeros(shape, dtype=profile["dtype"]))
    result = cli("translate", all_nodata, "--to", "dem", "-o", out, "--model", tiny)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (kept / "new").exists() and kept.is_dir()
    with pytest.raises(NoValidDataError):  # the Python API leaves nothing behind either
        api.translate(all_nodata, "dem", output=out, model=tiny, progress=False)
    assert not (kept / "new").exists() and kept.is_dir()


# --- row 7: a killed run's temporary file -------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
from geocopgen.io import open_raster
from geocopgen.raster.mosaic import MosaicWriter
from geocopgen.raster.grid import grid_of
grid = grid_of(open_raster(sys.argv[1]))
MosaicWriter(sys.argv[2], grid, ["DEM"], overwrite=True)  # its temporary file now exists
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_run_removes_the_temporary_file_of_a_killed_run(tmp_path):
    out = tmp_path / "dem.tif"
    assert cli("roundtrip", terramind("DEM"), "-o", out).exit_code == 0
    before = out.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(terramind("DEM")),
                               str(out)], env=env, stderr=subprocess.PIPE)  # fmt: skip
    assert killed.wait(timeout=120) == -9, killed.stderr.read()
    stale = [p.name for p in leftovers(tmp_path) if p != out]
    owner = _owner(killed.pid)
    assert len(stale) == 1 and re.fullmatch(rf"\.dem\.tif\.{owner}\.\w+\.tmp\.tif", stale[0])
    assert out.read_bytes() == before  # the old output is intact
    live = tmp_path / f".dem.tif.{_owner(os.getpid())}.abcdefgh.tmp.tif"  # a run still working
    live.write_bytes(b"")
    result = cli("roundtrip", terramind("DEM"), "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert leftovers(tmp_path) == sorted([out, live])


def test_stale_temporaries_of_other_outputs_and_machines_are_left_alone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owner = _owner(int(dead.stdout))
    mine = tmp_path / f".o.tif.{owner}.x1y2z3.tmp.agg.tif"
    other_output = tmp_path / f".other.tif.{owner}.x1y2z3.tmp.tif"
    other_machine = tmp_path / f".o.tif.elsewhere-{dead.stdout.strip()}.x1y2z3.tmp.tif"
    for p in (mine, other_output, other_machine):
        p.write_bytes(b"")
    assert remove_stale(tmp_path / "o.tif") == [mine]
    assert leftovers(tmp_path) == sorted([other_output, other_machine])


def _owner(pid: int) -> str:
    """``<host>-<pid>`` as the writer names its temporary files."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])
    return f"{host}-{pid}"
