"""translate-many on a real LocalCluster of worker processes, over the shared TerraMind tiles:
conditions by template, failures reported per scene, a STAC catalog carrying each output's grid,
a killed worker, resuming, a loopback STAC search, and bit-identity with a lone translate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pystac
import pytest
import rasterio
from conftest import DATA, terramind, truncated_copy
from pystac.extensions.projection import ProjectionExtension
from pystac.validation import validate_dict
from rasterio.windows import Window
from test_sources_stac import _asset, _bbox, _item, serve
from typer.testing import CliRunner

from geocopgen import api
from geocopgen.cli import app
from geocopgen.many import COMPLETE_TAG, scenes_from_majortom, scenes_from_stac, translate_many
from geocopgen.many.catalog import GENERATED
from geocopgen.many.scenes import nearest_item

PLACES = ["38D_378R_2_3", "282D_485L_3_3", "609U_541L_3_0", "637U_59R_1_3"]
TEMPLATE = "s1rtc={parent}/../s1/{stem}.tif"
FAST = ["--steps", "2", "--batch-size", "4"]


@pytest.fixture(scope="module")
def client() -> Iterator:
    """Two worker processes of one thread each, shared by the tests (starting them and
    importing torch costs seconds each time)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``s2/<scene>.tif`` with ``s1/<scene>.tif`` beside: the four TerraMind places, a crop of
    one without its Sentinel-1 file (a missing condition) and a truncated file (corrupt)."""
    root = tmp_path_factory.mktemp("scenes")
    (root / "s2").mkdir()
    (root / "s1").mkdir()
    for place in PLACES:
        shutil.copy(terramind("S2L2A", place), root / "s2" / f"{place}.tif")
        shutil.copy(terramind("S1RTC", place), root / "s1" / f"{place}.tif")
    with rasterio.open(terramind("S2L2A")) as src:
        window = Window(32, 48, 160, 160)
        profile = {**src.profile, "width": 160, "height": 160,
                   "transform": src.window_transform(window)}  # fmt: skip
        with rasterio.open(root / "s2" / "crop.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.update_tags(**src.tags())
    truncated_copy(terramind("S2L2A", PLACES[1]), root / "s2" / "broken.tif", keep=0.4)
    shutil.copy(terramind("S1RTC", PLACES[1]), root / "s1" / "broken.tif")
    return root


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-q", "translate-many", *map(str, args)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def _mtimes(folder: Path) -> dict[str, int]:
    """Modification times of the outputs (not of temporary files, which start with a dot)."""
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tif") if p.name[0] != "."}


def test_batch_reports_failures_and_catalogs_each_output_grid(client, scenes, tmp_path) -> None:
    out = tmp_path / "out"
    address = client.scheduler.address
    code, text = _cli(scenes / "s2" / "*.tif", "--to", "dem", "-o", out, "--cond", TEMPLATE,
                      "--scheduler", address, *FAST)  # fmt: skip
    assert code == 1, text
    assert "4 done, 0 skipped, 2 failed" in text
    assert "failed crop: missing condition s1rtc:" in text and "crop.tif does not exist" in text
    assert "failed broken:" in text and "broken.tif" in text
    assert sorted(p.name for p in out.glob("*.tif")) == sorted(f"{p}.dem.tif" for p in PLACES)
    assert not [p for p in out.rglob(".*")]  # no temporary file left

    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    summary = catalog.extra_fields["geocopgen:summary"]
    assert (summary["done"], summary["skipped"], summary["failed"]) == (4, 0, 2)
    reasons = {s["id"]: s["reason"] for s in summary["scenes"] if s["status"] == "failed"}
    assert set(reasons) == {"crop", "broken"} and all(reasons.values())
    items = {i.id: i for i in catalog.get_items()}
    assert set(items) == set(PLACES)
    # pystac validates the catalog and every item against the STAC core schemas it ships
    # (offline; the proj and raster extension schemas live on the web, checked by hand below)
    validate_dict(catalog.to_dict(include_self_link=False), extensions=[])
    for place, item in items.items():
        validate_dict(item.to_dict(include_self_link=False), extensions=[])
        # pystac reads back what it wrote, and the item round-trips through a dict unchanged
        assert pystac.Item.from_dict(item.to_dict()).to_dict() == item.to_dict()
        path = Path(item.assets["data"].get_absolute_href())
        with rasterio.open(path) as src:
            proj = ProjectionExtension.ext(item)  # pystac reads the file's v1.1 fields as v2
            assert proj.epsg == src.crs.to_epsg()
            assert proj.shape == [src.height, src.width]
            assert proj.transform[:6] == list(src.transform)[:6]
            assert src.tags()[COMPLETE_TAG] == item.properties["geocopgen:completion"]
            precision = src.tags()["PRECISION"]
        props = item.properties
        assert props[GENERATED] is True and props["geocopgen:seed"] == 0
        assert props["geocopgen:steps"] == 2 and props["geocopgen:precision"] == precision
        assert len(props["geocopgen:weights_sha256"]) == 64 and props["geocopgen:version"]
        assert item.assets["data"].extra_fields["raster:bands"][0]["unit"] == "m"
        hrefs = {Path(link.href).name for link in item.links if link.rel == "derived_from"}
        assert hrefs == {f"{place}.tif"}  # the S2 scene and its S1 condition share the name
        assert len([lk for lk in item.links if lk.rel == "derived_from"]) == 2
    schemas = [e for e in items[PLACES[0]].stac_extensions]
    assert any("projection" in s for s in schemas) and any("raster" in s for s in schemas)


def test_a_scene_alone_and_in_the_batch_are_bit_identical(client, scenes, tmp_path) -> None:
    place = PLACES[0]
    cond = {"s1rtc": "{parent}/../s1/{stem}.tif"}
    report = translate_many(
        [scenes / "s2" / f"{p}.tif" for p in PLACES[:3]], "dem", tmp_path / "b", cond=cond,
        client=client, steps=2, batch_size=4, progress=False, catalog=False,
    )  # fmt: skip
    assert report.count("done") == 3 and len({r.worker for r in report.results}) == 2
    alone = api.translate(
        scenes / "s2" / f"{place}.tif", "dem", cond={"s1rtc": scenes / "s1" / f"{place}.tif"},
        output=tmp_path / "alone.tif", steps=2, batch_size=4, progress=False,
    )  # fmt: skip
    assert alone is not None
    with rasterio.open(tmp_path / "alone.tif") as a, rasterio.open(
        tmp_path / "b" / f"{place}.dem.tif"
    ) as b:
        assert a.read().tobytes() == b.read().tobytes()
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)


def test_killed_worker_still_completes_every_good_scene(client, scenes, tmp_path) -> None:
    out = tmp_path / "k"
    pids = client.run(os.getpid)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=translate_many(
        [scenes / "s2" / f"{p}.tif" for p in PLACES], "dem", out,
        cond={"s1rtc": TEMPLATE.split("=", 1)[1]}, client=client, steps=2, batch_size=4,
        progress=False, catalog=False, retries=0,
    )))  # fmt: skip
    thread.start()
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline:
        busy = [w for w, keys in client.processing().items() if keys]
        if busy and any(k.startswith("translate-") for k in client.processing()[busy[0]]):
            killed = pids[busy[0]]
            os.kill(killed, 9)
        time.sleep(0.02)
    thread.join(120)
    assert killed is not None
    report = result["report"]
    assert report.count("done") == 4, report.summary()
    assert not [p for p in out.rglob(".*")]
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it: the next test has two
    assert killed not in client.run(os.getpid).values()


def test_rerun_skips_complete_outputs_and_redoes_partial_ones(client, scenes, tmp_path) -> None:
    out = tmp_path / "r"
    paths = [scenes / "s2" / f"{p}.tif" for p in PLACES]
    cond = {"s1rtc": TEMPLATE.split("=", 1)[1]}
    options = {"client": client, "steps": 2, "batch_size": 4, "progress": False}
    # an interrupted run: two outputs complete, one partial file at its name, and the
    # temporary file of a writer that was killed (pid 2**22 + 1 does not run)
    translate_many(paths[:2], "dem", out, cond=cond, **options)
    before = _mtimes(out)
    truncated_copy(out / f"{PLACES[0]}.dem.tif", out / f"{PLACES[2]}.dem.tif", keep=0.3)
    partial = _mtimes(out)[f"{PLACES[2]}.dem.tif"]
    host = __import__("geocopgen.outputs", fromlist=["_host"])._host()
    stale = out / f".{PLACES[3]}.dem.tif.{host}-{2**22 + 1}.abc.tmp.tif"
    stale.write_bytes(b"half")
    time.sleep(0.01)
    report = translate_many(paths, "dem", out, cond=cond, **options)
    status = {r.id: r.status for r in report.results}
    assert status == {PLACES[0]: "skipped", PLACES[1]: "skipped",
                      PLACES[2]: "done", PLACES[3]: "done"}  # fmt: skip
    after = _mtimes(out)
    assert all(after[name] == before[name] for name in before)  # complete: not redone
    assert after[f"{PLACES[2]}.dem.tif"] != partial
    with rasterio.open(out / f"{PLACES[2]}.dem.tif") as src:
        assert src.tags()[COMPLETE_TAG] and src.read().size
    assert not stale.exists()
    catalog = json.loads((out / "catalog.json").read_text())
    assert catalog["geocopgen:summary"]["skipped"] == 2
    # other settings: a complete output is not replaced without --overwrite
    report = translate_many(paths[:1], "dem", out, cond=cond, **{**options, "seed": 7})
    assert report.failed and "other settings" in report.failed[0].reason
    assert _mtimes(out)[f"{PLACES[0]}.dem.tif"] == before[f"{PLACES[0]}.dem.tif"]


def test_list_file_and_cog_outputs_carry_the_completion_tag(client, scenes, tmp_path) -> None:
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# one scene\n\n{scenes / 's2' / PLACES[3]}.tif\n")
    report = translate_many([], "dem", tmp_path / "c", list_file=listing, client=client,
                            steps=2, cog=True, progress=False)  # fmt: skip
    assert report.count("done") == 1, report.summary()
    with rasterio.open(tmp_path / "c" / f"{PLACES[3]}.dem.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert len(src.tags()[COMPLETE_TAG]) == 64
    item = next(pystac.Catalog.from_file(str(tmp_path / "c" / "catalog.json")).get_items())
    assert item.assets["data"].media_type == pystac.MediaType.COG


def _wait_gone(group: int, timeout: float = 20.0) -> None:
    """Wait until no process of process group ``group`` runs (zombies do not count)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                running.append(stat)
        if not running:
            return
        time.sleep(0.05)


def test_a_killed_run_resumes_without_redoing_complete_outputs(client, scenes, tmp_path) -> None:
    """The whole run (client, scheduler, worker) killed with SIGKILL after its first output:
    the rerun keeps the outputs that were complete and makes the rest."""
    out = tmp_path / "i"
    paths = [str(scenes / "s2" / f"{p}.tif") for p in PLACES]
    cmd = [sys.executable, "-m", "geocopgen", "-q", "translate-many", *paths, "--to", "dem",
           "-o", str(out), "--cond", TEMPLATE, "--workers", "1", "--steps", "8"]  # fmt: skip
    run = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not _mtimes(out) and time.time() < deadline and run.poll() is None:
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    _wait_gone(run.pid)  # SIGKILL takes a moment to end the worker; a user reruns later
    before = _mtimes(out)
    assert 0 < len(before) < len(PLACES), before  # interrupted in the middle
    report = translate_many(paths, "dem", out, cond={"s1rtc": TEMPLATE.split("=", 1)[1]},
                            client=client, steps=8, progress=False)  # fmt: skip
    status = {r.id: r.status for r in report.results}
    assert [status[name.split(".")[0]] for name in before] == ["skipped"] * len(before)
    assert report.count("done") == len(PLACES) - len(before)
    assert all(_mtimes(out)[name] == mtime for name, mtime in before.items())
    assert not [p for p in out.rglob(".*")]  # the killed writer's temporary files are gone


# --- STAC ----------------------------------------------------------------------------------------
def _stac_items() -> list[dict]:
    """S2 L2A scenes of two places; S1 RTC items of one place at several dates (the nearest
    within 10 days is the pair) and of the other only 30 days off (missing)."""
    items = []

    def add(place: str, modality: str, collection: str, item_id: str, when: str) -> None:
        path = terramind(modality, place)
        items.append(_item(item_id, collection, _bbox(path), when, {}, {"data": _asset(path)}))

    add(PLACES[0], "S2L2A", "s2", "s2-a", "2023-06-10T08:00:00Z")
    add(PLACES[1], "S2L2A", "s2", "s2-b", "2023-06-10T08:00:00Z")
    add(PLACES[0], "S1RTC", "s1", "s1-a-far", "2023-06-18T08:00:00Z")
    add(PLACES[0], "S1RTC", "s1", "s1-a-near", "2023-06-12T08:00:00Z")
    add(PLACES[0], "S1RTC", "s1", "s1-a-late", "2023-07-20T08:00:00Z")
    add(PLACES[1], "S1RTC", "s1", "s1-b-late", "2023-07-10T08:00:00Z")
    return items


@pytest.fixture(scope="module")
def stac_url() -> Iterator[str]:
    yield from serve(_stac_items())


def test_stac_search_pairs_conditions_by_time(client, stac_url, tmp_path) -> None:
    scenes = scenes_from_stac(url=stac_url, collection="s2", cond={"s1rtc": "s1"},
                              datetime="2023-06-01/2023-06-30", max_days=10)  # fmt: skip
    by_id = {s.id: s for s in scenes}
    assert set(by_id) == {"s2-a", "s2-b"}
    assert by_id["s2-a"].cond == {"s1rtc": str(terramind("S1RTC", PLACES[0]))}
    assert "s1-a-near" in " ".join(by_id["s2-a"].links)
    assert by_id["s2-b"].missing and "within 10 days" in by_id["s2-b"].missing[0]
    code, text = _cli("--stac", stac_url, "--collection", "s2", "--cond", "s1rtc=s1",
                      "--datetime", "2023-06-01/2023-06-30", "--to", "dem", "-o", tmp_path,
                      "--scheduler", client.scheduler.address, *FAST)  # fmt: skip
    assert code == 1 and "1 done, 0 skipped, 1 failed" in text, text
    item = next(pystac.Catalog.from_file(str(tmp_path / "catalog.json")).get_items())
    assert item.id == "s2-a" and item.datetime.isoformat().startswith("2023-06-10T08:00")


def test_item_collection_file_with_relative_hrefs(tmp_path) -> None:
    items = _stac_items()
    for item in items:  # hrefs relative to the file, as a catalog on disk would have them
        href = item["assets"]["data"]["href"]
        item["assets"]["data"]["href"] = os.path.relpath(href, tmp_path)
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    scenes = scenes_from_stac(items=path, collection="s2", cond={"s1rtc": "s1"}, max_days=10)
    by_id = {s.id: s for s in scenes}
    assert Path(by_id["s2-a"].source).resolve() == terramind("S2L2A", PLACES[0]).resolve()
    assert Path(by_id["s2-a"].cond["s1rtc"]).resolve() == terramind("S1RTC").resolve()
    assert by_id["s2-b"].missing  # its only S1 item is 30 days off


def test_nearest_item_ties_and_partial_cover() -> None:
    base = _item("s", "s2", [0.0, 0.0, 1.0, 1.0], "2023-06-10T00:00:00Z", {}, {})
    scene = pystac.Item.from_dict(base)

    def cand(item_id: str, bbox: list[float], when: str) -> pystac.Item:
        return pystac.Item.from_dict(_item(item_id, "s1", bbox, when, {}, {}))

    before = cand("before", [0.0, 0.0, 1.0, 1.0], "2023-06-08T00:00:00Z")
    after = cand("after", [-1.0, -1.0, 2.0, 2.0], "2023-06-12T00:00:00Z")
    half = cand("half", [0.5, 0.0, 1.5, 1.0], "2023-06-10T00:00:00Z")
    # equal gaps: the larger cover wins (both cover the scene wholly: the earlier)
    assert nearest_item(scene, [after, before, half], 10)[0].id in ("before", "after")
    assert nearest_item(scene, [after, before], 10)[0].id == "before"
    match, why = nearest_item(scene, [half], 10)
    assert match is None and "half (50%)" in why


def test_major_tom_cells_are_scenes_with_conditions_by_cell_and_time(client, tmp_path) -> None:
    """``--majortom ROOT --cells``: one scene per product of the cells asked for; a condition
    is the same cell's product of another source nearest in time within ``--max-days``, and a
    cell without one is reported, not translated without it."""
    root = tmp_path / "majortom"
    root.mkdir()
    (root / "Core-S2L2A").symlink_to(DATA / "majortom" / "Core-S2L2A")
    for day in ("20220709T101010", "20220805T101010"):  # 3 and 30 days after 0U_199R's S2
        product = root / "Core-S1RTC" / "0U" / "0U_199R" / f"S1A_IW_GRDH_1SDV_{day}_{day}_0"
        product.mkdir(parents=True)
        (product / "vv.tif").touch()  # pairing reads the layout, not the pixels
    scenes = scenes_from_majortom(root, "Core-S2L2A", cond={"s1rtc": "Core-S1RTC"})
    by_cell = {s.id.split("_S2")[0]: s for s in scenes}
    assert set(by_cell) == {"0U_199R", "199U_1099R"}
    assert by_cell["0U_199R"].cond["s1rtc"].endswith("20220709T101010_0")
    assert by_cell["0U_199R"].datetime.startswith("2022-07-06") and not by_cell["0U_199R"].missing
    assert "no Core-S1RTC product of cell 199U_1099R within 10 days (none)" in (
        by_cell["199U_1099R"].missing[0]
    )
    near = scenes_from_majortom(root, "Core-S2L2A", cells=["0U_199R"],
                                cond={"s1rtc": "Core-S1RTC"}, max_days=2)  # fmt: skip
    assert len(near) == 1 and "the nearest is 3 days away" in near[0].missing[0]
    out = tmp_path / "out"
    code, text = _cli("--majortom", root, "--source", "Core-S2L2A", "--cells", "0U_199R",
                      "--to", "dem", "-o", out, "--scheduler", client.scheduler.address,
                      *FAST)  # fmt: skip
    assert code == 0, text
    (made,) = out.glob("*.tif")
    assert made.name.startswith("0U_199R_") and made.name.endswith(".dem.tif")
    b04 = Path(by_cell["0U_199R"].source) / "B04.tif"  # a 10 m band: the scene's grid
    with rasterio.open(made) as dst, rasterio.open(b04) as src:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
