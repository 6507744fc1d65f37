"""Every bad input gets a named error that names the file, through the API and the CLI (exit 1),
and leaves no output file (temporary ones included) behind."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from conftest import (
    EXPLORADORES,
    LANDSAT,
    LOS_ANGELES,
    leftovers,
    terramind,
    truncated_copy,
    write_variant,
)
from typer.testing import CliRunner

from geocopgen.cli import app
from geocopgen.errors import (
    BandMismatchError,
    MissingCRSError,
    NaNInputError,
    NoOverlapError,
    NoValidDataError,
    OutputError,
    TransformError,
    UnknownModalityError,
    UnreadableInputError,
)
from geocopgen.io import align, open_raster
from geocopgen.raster.mosaic import apply_chipwise, identity

runner = CliRunner()


def roundtrip_cli(src, out, *extra):
    return runner.invoke(app, ["-q", "roundtrip", str(src), "-o", str(out), *extra])


def check_refused(src, error, tmp_path, *cli_extra, modality=None, match=None):
    """API raises ``error`` naming the file; CLI exits 1 with a one-line message; no output."""
    out_dir = tmp_path / "out"
    with pytest.raises(error, match=match or src.name):
        array = open_raster(src, modality)
        apply_chipwise(array, identity, out_dir / "api.tif", progress=False)
    result = roundtrip_cli(src, out_dir / "cli.tif", *cli_extra)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert src.name in result.output
    assert leftovers(out_dir) == []


def test_missing_crs(tmp_path):
    src = write_variant(terramind("DEM"), tmp_path / "no_crs.tif", crs=None)
    check_refused(src, MissingCRSError, tmp_path)


def test_rotated_transform(tmp_path):
    rotated = Affine.translation(617301.8, 9625098.2) @ Affine.rotation(15) @ Affine.scale(10, -10)
    src = write_variant(terramind("DEM"), tmp_path / "rotated.tif", transform=rotated)
    check_refused(src, TransformError, tmp_path)


def test_sheared_transform(tmp_path):
    sheared = Affine(10.0, 2.0, 617301.8, 0.0, -10.0, 9625098.2)
    src = write_variant(terramind("DEM"), tmp_path / "sheared.tif", transform=sheared)
    check_refused(src, TransformError, tmp_path)


def test_truncated_file(tmp_path):
    src = truncated_copy(EXPLORADORES, tmp_path / "truncated_dem.tif", keep=0.6)
    check_refused(src, UnreadableInputError, tmp_path)


def test_not_a_raster(tmp_path):
    src = tmp_path / "garbage_dem.tif"
    src.write_bytes(b"this is not a tiff" * 100)
    check_refused(src, UnreadableInputError, tmp_path)


def test_missing_file(tmp_path):
    check_refused(tmp_path / "nowhere_dem.tif", UnreadableInputError, tmp_path)


def test_wrong_band_count_for_stated_modality(tmp_path):
    src = terramind("S2L1C")  # 13 bands, stated as L2A (12)
    check_refused(src, BandMismatchError, tmp_path, "--modality", "s2l2a", modality="s2l2a")


def test_all_nodata(tmp_path):
    src = write_variant(
        EXPLORADORES, tmp_path / "empty_dem.tif", data=lambda a: np.full_like(a, -9999)
    )
    check_refused(src, NoValidDataError, tmp_path)


def test_undeclared_nan(tmp_path):
    def holes(a):
        a = a.copy()
        a[0, 100:120, 50:90] = np.nan
        return a

    src = write_variant(EXPLORADORES, tmp_path / "nan_dem.tif", data=holes, nodata=-9999)
    check_refused(src, NaNInputError, tmp_path, match="nan_dem.tif.*--nodata nan")
    # declaring NaN as nodata makes the same file usable
    out = apply_chipwise(
        open_raster(src, nodata=float("nan")), identity, tmp_path / "ok.tif", progress=False
    )
    assert out.exists()
    result = roundtrip_cli(src, tmp_path / "ok_cli.tif", "--nodata", "nan")
    assert result.exit_code == 0, result.output


def test_landsat_is_an_unknown_modality(tmp_path):
    check_refused(LANDSAT, UnknownModalityError, tmp_path)


def test_landsat_with_a_stated_modality_is_a_band_mismatch(tmp_path):
    check_refused(LANDSAT, BandMismatchError, tmp_path, "-m", "s2l2a", modality="s2l2a")


def test_conditions_that_do_not_overlap():
    with pytest.raises(NoOverlapError, match=EXPLORADORES.name):
        align([open_raster(LOS_ANGELES), open_raster(EXPLORADORES)])


@pytest.mark.parametrize("case", ["parent_is_a_file", "is_a_folder", "is_the_input"])
def test_unwritable_output(tmp_path, case):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    src = terramind("DEM")
    out = {
        "parent_is_a_file": blocker / "out.tif",
        "is_a_folder": tmp_path,
        "is_the_input": src,
    }[case]
    with pytest.raises(OutputError):
        apply_chipwise(open_raster(src), identity, out, progress=False)
    result = roundtrip_cli(src, out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert leftovers(tmp_path) == [blocker]
