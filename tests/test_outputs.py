"""One output policy for every writer (issue 14): an existing output is refused unless asked
(``--overwrite`` / ``overwrite=True``, each surface naming its own switch), missing folders are
created and named, and SIGTERM cleans up like Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import VIRGINIA, leftovers, terramind
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.errors import OutputError, OutputExistsError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).parents[1]
runner = CliRunner()
PRECIOUS = b"an hour of work"


def cli(*args: object):
    return runner.invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _precious(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PRECIOUS)
    return path


# --- items 1 and 2: refuse an existing output, naming a switch that exists ------------------------
def test_the_api_refuses_an_existing_output_and_names_overwrite_true(tiny, tmp_path):
    out = _precious(tmp_path / "dem.tif")
    fast = dict(model=tiny, steps=1, progress=False, device="cpu")
    with pytest.raises(OutputExistsError, match=r"pass overwrite=True") as err:
        api.translate(terramind("S2L2A"), "dem", output=out, **fast)
    assert "--overwrite" not in str(err.value)
    with pytest.raises(OutputExistsError, match=r"overwrite=True"):
        api.generate("dem", like=terramind("S2L2A"), output=out, **fast)
    assert out.read_bytes() == PRECIOUS
    api.translate(terramind("S2L2A"), "dem", output=out, overwrite=True, **fast)
    with rasterio.open(out) as src:
        assert src.tags()["TARGET_MODALITY"] == "dem"


def test_decode_and_the_building_blocks_refuse_an_existing_output_too(tiny, tmp_path):
    from geocopgen.io import grid_of, open_raster
    from geocopgen.translation import CanvasTranslator, TranslateOptions, translate_to_file

    out = _precious(tmp_path / "out.tif")
    fast = dict(model=tiny, progress=False, device="cpu")
    latents = api.encode(terramind("DEM"), modality="dem", **fast)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        api.decode(latents, output=out, **fast)
    s2 = open_raster(terramind("S2L2A"))
    translator = CanvasTranslator(api.load_model(tiny, device="cpu"), "dem", TranslateOptions())
    with pytest.raises(OutputExistsError):
        translate_to_file(translator, grid_of(s2), {"s2l2a": s2}, out)
    assert out.read_bytes() == PRECIOUS
    api.decode(latents, output=out, overwrite=True, **fast)
    with rasterio.open(out) as src:
        assert src.tags()["OPERATION"] == "decode"


@pytest.mark.parametrize(
    "command",
    [
        ["translate", terramind("S2L2A"), "--to", "dem", "--steps", 1],
        ["generate", "--to", "dem", "--like", terramind("S2L2A"), "--steps", 1],
        ["roundtrip", terramind("DEM")],
        ["evaluate", "MODEL", terramind("DEM").parents[1], "--json"],
        ["encode", "folder", terramind("DEM").parents[1], "-a", "s2l2a=MODEL"],
    ],
    ids=["translate", "generate", "roundtrip", "evaluate", "encode"],
)
def test_every_cli_writer_refuses_an_existing_output(tiny, tmp_path, command):
    out = _precious(tmp_path / "existing.out")
    args = [str(a).replace("MODEL", str(tiny)) for a in command]
    if args[0] in ("translate", "generate"):
        args += ["--model", tiny, "--device", "cpu"]
    if args[-1] != "--json":
        args.append("-o")
    result = cli("-q", *args, out)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"Error: {out} exists; pass --overwrite to replace it, or choose another output."
    ]
    assert out.read_bytes() == PRECIOUS and leftovers(tmp_path) == [out]


def test_overwrite_replaces_the_output_atomically(tiny, tmp_path):
    out = _precious(tmp_path / "dem.tif")
    base = ["-q", "translate", terramind("S2L2A"), "--to", "dem", "-o", out, "--model", tiny]
    result = cli(*base, "--steps", 1, "--device", "cpu", "--overwrite")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert src.count == 1 and src.descriptions == ("elevation",)
    assert leftovers(tmp_path) == [out]
    result = cli("-q", "roundtrip", terramind("DEM"), "-o", out, "--overwrite")
    assert result.exit_code == 0 and leftovers(tmp_path) == [out]


def test_the_input_itself_is_refused_even_with_overwrite(tmp_path):
    copy = tmp_path / "dem.tif"
    copy.write_bytes(terramind("DEM").read_bytes())
    result = cli("-q", "roundtrip", copy, "-o", copy, "--overwrite")
    assert result.exit_code == 1 and "is the input itself" in result.output
    assert copy.read_bytes() == terramind("DEM").read_bytes()


def test_a_latent_store_output_is_resumed_but_a_foreign_folder_is_refused(tmp_path, tiny):
    foreign = tmp_path / "notes"
    _precious(foreign / "todo.txt")
    result = cli("encode", "folder", terramind("DEM").parents[1], "-o", foreign,
                 "-a", f"dem={tiny}", "--overwrite")  # fmt: skip
    assert result.exit_code == 1 and "not a latent store" in result.output
    assert (foreign / "todo.txt").read_bytes() == PRECIOUS


# --- item 10: missing folders are created, and said so -------------------------------------------
def test_missing_output_folders_are_created_and_named(tmp_path):
    out = tmp_path / "a" / "b" / "c" / "o.tif"
    result = cli("roundtrip", terramind("DEM"), "-o", out)
    assert result.exit_code == 0, result.output
    assert f"geocopgen: created the folder {tmp_path / 'a'}" in result.stderr
    assert f"created the folder {tmp_path / 'a' / 'b' / 'c'}" in result.stderr
    assert out.is_file()
    assert "Missing folders are created" in cli("roundtrip", "-h").stdout
    quiet = cli("-q", "roundtrip", terramind("DEM"), "-o", tmp_path / "d" / "o.tif")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_file_in_the_way_of_an_output_folder_is_one_line(tmp_path):
    blocker = _precious(tmp_path / "file")
    with pytest.raises(OutputError, match="cannot create the output folder"):
        api.translate(terramind("S2L2A"), "dem", output=blocker / "x" / "o.tif")


# --- item 3: SIGTERM cleans up like Ctrl-C ------------------------------------------------------
def test_sigterm_removes_the_temporary_file_and_exits_143(tmp_path):
    """A real process translating the Virginia scene, terminated once its output's temporary
    file exists (what ``timeout`` and batch schedulers do)."""
    out_dir = tmp_path / "d"
    cmd = [sys.executable, "-m", "geocopgen", "-q", "translate", str(VIRGINIA), "--to", "dem",
           "-o", str(out_dir / "o.tif"), "--steps", "1", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(out_dir.glob(".o.*.tmp.tif")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the output's temporary file never appeared"
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(1)  # inside the model's work, not at its very start
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM); no output was written" in stderr
    assert "Traceback" not in stderr
    assert leftovers(out_dir) == []
