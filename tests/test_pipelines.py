"""The encode recipes end to end: folder, Major TOM and STAC → zarr, via the CLI and scripts."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _latents_fixtures import DATA, TERRAMIND, tiny_codec
from typer.testing import CliRunner

from geocopgen.cli.data import encode_app
from geocopgen.latents import LatentStore

ROOT = Path(__file__).parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def autoencoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("autoencoders")
    paths = {}
    for m in ("s2l2a", "dem"):
        tiny_codec(m).save_pretrained(out / m)
        paths[m] = f"{m}={out / m}"
    return paths


def test_folder_recipe_encodes_then_resumes(tmp_path: Path, autoencoders: dict) -> None:
    args = ["folder", str(TERRAMIND), "-o", str(tmp_path / "f.zarr"), "--chip-size", "112"]
    args += ["-a", autoencoders["s2l2a"], "-a", autoencoders["dem"], "--no-progress"]
    first = runner.invoke(encode_app, args)
    assert first.exit_code == 0, first.output
    assert "16 chips planned, 16 encoded, 0 already complete, 0 failed" in first.output
    again = runner.invoke(encode_app, args)
    assert "0 encoded, 16 already complete" in again.output
    store = LatentStore.open(tmp_path / "f.zarr")
    assert store.modalities == ["s2l2a", "dem"] and store.complete.all()
    assert set(store.table().place) == {p.stem for p in (TERRAMIND / "DEM").glob("*.tif")}


def test_majortom_recipe_with_filters(tmp_path: Path, autoencoders: dict) -> None:
    out = tmp_path / "mt.zarr"
    args = ["majortom", "--source", f"s2l2a={DATA / 'majortom'}", "-o", str(out)]
    args += ["-a", autoencoders["s2l2a"], "--start", "2020-01-01", "--end", "2020-12-31"]
    args += ["--batch-size", "13", "--no-progress"]
    result = runner.invoke(encode_app, args)
    assert result.exit_code == 0, result.output
    assert "25 chips planned, 25 encoded" in result.output  # 1068 px → 5 x 5 chips of 256
    table = LatentStore.open(out).table()
    assert set(table.place) == {"199U_1099R"}
    assert set(table.sources) == {"S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543"}
    assert table.datetime.iloc[0].startswith("2020-02-23T03:27:39")
    # Appending by cell id adds the other cell only.
    cells = ["--cells", "0U_199R", "--cells", "199U_1099R", "--no-progress"]
    more = runner.invoke(encode_app, [*args[:7], *cells])
    assert "50 chips planned, 25 encoded, 25 already complete" in more.output, more.output


def test_stac_recipe_against_a_loopback_api(tmp_path: Path, autoencoders: dict) -> None:
    from http.server import ThreadingHTTPServer

    from test_sources_stac import PRODUCTS, _bbox, _catalog, _StacHandler

    handler = type("Handler", (_StacHandler,), {"items": _catalog()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w, s, e, n = _bbox(PRODUCTS[1] / "B02.tif")
        cx, cy = (w + e) / 2, (s + n) / 2
        args = ["stac", "--api", f"http://127.0.0.1:{server.server_address[1]}"]
        bbox = f"{cx - 0.01},{cy - 0.01},{cx + 0.01},{cy + 0.01}"
        args += ["--preset", "earth-search", "--bbox", bbox, "-o", str(tmp_path / "s.zarr")]
        args += ["-a", autoencoders["s2l2a"], "--chip-size", "128", "--no-progress"]
        result = runner.invoke(encode_app, args)
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    table = LatentStore.open(tmp_path / "s.zarr").table()
    # The load grid is the 0.02° bbox (about 220 px on the item's own pixel grid): 2 x 2 chips.
    assert table.complete.all() and len(table) == 4
    assert set(table.sources) == {PRODUCTS[1].name}


def test_recipe_script_runs_and_errors_are_one_line(tmp_path: Path, autoencoders: dict) -> None:
    script = ROOT / "pipelines" / "folder_to_zarr.py"
    out = tmp_path / "script.zarr"
    cmd = [sys.executable, str(script), str(TERRAMIND), "-o", str(out), "--chip-size", "224"]
    done = subprocess.run(
        [*cmd, "-a", autoencoders["dem"], "--no-progress"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "4 chips planned, 4 encoded" in done.stdout
    bad = runner.invoke(encode_app, ["folder", str(TERRAMIND), "-o", str(out), "-a", "dem"])
    assert bad.exit_code == 2 and "'dem': write it as MODALITY=DIR" in bad.output  # usage error


def test_default_model_recipes_record_one_work_path(tmp_path: Path, monkeypatch) -> None:
    """The recipes' checkpoints record paths under --work and a resume compares them, so a
    relative --work resolves against the caller's directory to one absolute path."""
    sys.path.insert(0, str(ROOT / "pipelines"))
    try:
        from train_default_model import work_folder
    finally:
        sys.path.remove(str(ROOT / "pipelines"))
    monkeypatch.chdir(tmp_path)
    assert work_folder("work/v6") == work_folder(str(tmp_path / "work" / "v6"))
    assert work_folder("work/v6") == tmp_path.resolve() / "work" / "v6"


def test_lopo_verdicts_count_every_some_and_no_baseline(monkeypatch) -> None:
    """The LOPO verdicts judge the DEM on relief and the rest on MAE, a tie is not a win, and
    the counts line says how many cases beat every baseline and at least one."""
    monkeypatch.syspath_prepend(str(ROOT / "pipelines"))
    from lopo_default_model import verdicts

    results = {
        "s2l2a → dem": {"A": {"model, mean of 4": {"relief_mae": 2.0, "mae": 9.0},
                              "flat": {"relief_mae": 2.0, "mae": 2.0}}},
        "s2l1c → s2l2a": {"A": {"model, mean of 4": {"mae": 0.02}, "first guess alone":
                                {"mae": 0.01}, "ridge": {"mae": 0.03}, "copy": {"mae": 0.04}},
                          "B": {"model, mean of 4": {"mae": 0.05}, "ridge": {"mae": 0.03},
                                "copy": {"mae": 0.06}}},
    }  # fmt: skip
    text = verdicts(results)
    assert "- s2l2a → dem, A: beats no baseline" in text
    assert "- s2l1c → s2l2a, A: beats every baseline" in text  # model rows are not baselines
    assert "- s2l1c → s2l2a, B: does not beat ridge" in text
    assert text.endswith("beats every baseline in 1 of 3 cases, at least one baseline in 2 of 3.")
    picked = verdicts({"s2l1c → s2l2a": {"B": {"choice": {"mae": 0.02}, "ridge": {"mae": 0.03}}}},
                      model="choice")  # fmt: skip
    assert "B: beats every baseline" in picked
