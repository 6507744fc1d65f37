"""Every geocopgen command follows one set of conventions (issue 14, items 4 and 11): ``--version``
and ``-h``, ``-o/--output``, ``--bbox W,S,E,N``, a checked ``--device``, documented ``--overlap``
defaults, metavars in words, the same band lists in ``info``, option values checked before any
slow work."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import typer
from conftest import leftovers, terramind
from typer.testing import CliRunner

import geocopgen
from geocopgen.cli import app
from geocopgen.errors import ConfigError
from geocopgen.io import open_raster

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [*map(str, args)])


def _commands(group=None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's name path, sub-commands included."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = sorted(_commands())
WRITERS = {("translate",), ("generate",), ("roundtrip",), ("encode", "folder"),
           ("encode", "majortom"), ("encode", "stac")}  # fmt: skip


def test_version_and_short_help():
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"geocopgen {geocopgen.__version__}\n"
    assert cli("-h").stdout == cli("--help").stdout and "--version" in cli("-h").stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_s_help_reads_like_one_tool_s(path):
    result = cli(*path, "-h")
    assert result.exit_code == 0, result.output
    text = result.stdout
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: geocopgen {' '.join(path)} [OPTIONS]")
    assert "{" not in usage  # positional arguments bare, not {FILE}
    assert not re.search(r"<(int|float|str|path|list|bool|tuple)\b", text), text  # no Python types
    assert "--out " not in text and "--out," not in text
    if path in WRITERS:
        assert "-o, --output" in text and "--overwrite" in text
    if "--device" in text:
        assert "--device auto|cpu|cuda[:N]|mps" in text
    if "--bbox" in text:
        assert "--bbox W,S,E,N" in text


def test_each_overlap_default_says_why():
    assert "denoiser predicts a chip's outer" in cli("translate", "-h").stdout
    assert "only has to hide resampling" in cli("roundtrip", "-h").stdout
    assert "should not repeat pixels" in cli("encode", "folder", "-h").stdout


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "majortom", "--source", "s2l2a=x", "-o", "s.zarr", "-a", "s2l2a=.",
         "--bbox", "1", "2", "3", "4"],  # four numbers: the old form
        ["encode", "stac", "--bbox", "1,2,3", "-o", "s.zarr", "-a", "s2l2a=."],
        ["train", "autoencoder", "cfg.yaml", "-o", "run", "--device", "gpu"],
        ["translate", "IN", "--to", "dem", "-o", "x.tif", "--device", "tpu"],
        ["translate", "IN", "--to", "dem", "-o", "x.tif", "--s2-offset", "5"],
        ["roundtrip", "IN", "-o", "x.tif", "--s2-offset", "1000"],
        ["info", "IN", "--s2-offset", "5"],
        ["translate", "IN", "--to", "dem", "-o", "x.tif", "--overlap", "5"],
        ["encode", "folder", "IN", "-o", "s.zarr", "-a", "s2l2a=.", "--chip-size", "100"],
        ["encode", "stac", "--bbox", "1,2,3,4", "-o", "s.zarr", "-a", "s2l2a=.",
         "--max-cloud", "150"],
    ],
    ids=["majortom-bbox", "stac-bbox", "train-device", "translate-device",
         "translate-s2-offset", "roundtrip-s2-offset", "info-s2-offset", "translate-overlap",
         "encode-chip-size", "encode-max-cloud"],
)  # fmt: skip
def test_bad_option_values_are_usage_errors(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    args = [str(terramind("S2L2A")) if a == "IN" else a for a in args]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert leftovers(tmp_path) == []


def test_s2_offset_names_its_two_values_everywhere():
    result = cli("info", terramind("S2L2A"), "--s2-offset", "5")
    assert "5 is not a Sentinel-2 DN offset; use 0 or -1000" in result.output
    assert cli("info", terramind("S2L2A"), "--s2-offset", "-1000", "--json").exit_code == 0
    with pytest.raises(ConfigError, match="offset=5 is not a Sentinel-2 DN offset"):
        open_raster(terramind("S2L2A"), offset=5)


def test_info_lists_bands_alike_for_every_modality():
    for folder, bands in (("S1RTC", "VV, VH"), ("DEM", "elevation"), ("S2L2A", "B01, B02")):
        text = cli("info", terramind(folder), "--model", "nowhere").stdout
        line = next(ln for ln in text.splitlines() if ln.startswith("bands"))
        assert bands in line and "[" not in line, line


def test_encode_checks_local_autoencoders_before_any_network(tmp_path):
    start = time.monotonic()
    result = cli("encode", "stac", "--bbox", "11.2,45.1,11.6,45.4", "-o", tmp_path / "s.zarr",
                 "-a", "s2l2a=/nonexistent", "--api", "http://127.0.0.1:9")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "s2l2a=/nonexistent: no such file or folder" in result.output
    assert time.monotonic() - start < 5 and leftovers(tmp_path) == []
