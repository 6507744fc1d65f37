"""Zarr latent store: content, resume after a kill, append, distributed, codec checks, Dataset."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from _latents_fixtures import DATA, TERRAMIND, terramind_places, tiny_codec
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geocopgen.errors import ConfigError, GridError
from geocopgen.latents import LatentStore, Place, chip_windows, encode_places
from geocopgen.latents.dataset import DIHEDRAL, LatentDataset, dihedral
from geocopgen.latents.places import places_from_majortom
from geocopgen.modalities import get_modality
from geocopgen.sources import MajorTOM

MODS = ("s2l2a", "dem")


@pytest.fixture(scope="module")
def codecs() -> dict:
    return {m: tiny_codec(m) for m in MODS}


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory: pytest.TempPathFactory, codecs: dict) -> Path:
    """An uninterrupted threaded run over the four TerraMind places, 64 px chips."""
    path = tmp_path_factory.mktemp("latents") / "ref.zarr"
    report = encode_places(
        terramind_places(MODS), path, codecs, chip_size=64, batch_size=4, progress=False
    )
    assert (report.planned, report.encoded, report.failed) == (64, 64, 0)
    return path


def _moments(path: Path) -> dict[str, np.ndarray]:
    store = LatentStore.open(path)
    order = np.argsort(store.keys())
    return {m: store.moments(m, slice(None))[order] for m in store.modalities}


def test_chip_windows_snap_inward() -> None:
    assert chip_windows(224, 224, 64) == [
        (r, c) for r in (0, 64, 128, 160) for c in (0, 64, 128, 160)
    ]
    assert chip_windows(256, 256, 256) == [(0, 0)]
    with pytest.raises(GridError, match="smaller than the 256 px chip"):
        chip_windows(224, 224, 256)


def test_store_content_matches_direct_encoding(reference_store: Path, codecs: dict) -> None:
    store = LatentStore.open(reference_store)
    table = store.table()
    assert len(store) == 64 and table.key.is_unique and table.complete.all()
    assert store.modalities == list(MODS) and store.chip_size == 64
    attrs = store.codecs["s2l2a"]
    assert attrs["bands"] == list(get_modality("s2l2a").band_names)
    assert attrs["center"][1] == get_modality("s2l2a").bands[1].center
    assert len(attrs["codec"]["hash"]) == 16 and attrs["codec"]["name"] == "ModalityAutoencoder"
    row = table[table.key == "38D_378R_2_3|64|160"].iloc[0]
    with rasterio.open(TERRAMIND / "S2L2A" / "38D_378R_2_3.tif") as src:
        win = Window(160, 64, 64, 64)
        assert row.crs == src.crs.to_string()
        assert row["transform"] == tuple(window_transform(win, src.transform))[:6]
        s2 = src.read(window=win).astype(np.float32) / 10000  # TerraMind tiles: offset 0
    with rasterio.open(TERRAMIND / "DEM" / "38D_378R_2_3.tif") as src:
        dem = src.read(window=Window(160, 64, 64, 64)).astype(np.float32)
    assert (row.valid_s2l2a, row.valid_dem) == (1.0, 1.0)
    index = int(row.name)
    for m, x in (("s2l2a", s2), ("dem", dem)):
        x = torch.from_numpy(get_modality(m).normalize(x, axis=0))[None]
        with torch.inference_mode():
            want = codecs[m].encode_moments(x)[0].numpy()
        # 5e-4: the store encodes in batches of 8 with channels-last convolutions, whose
        # float32 algorithms differ from a batch of one (about 2e-4 here)
        np.testing.assert_allclose(store.moments(m, index), want, rtol=1e-3, atol=5e-4)
    assert store.moments("s2l2a", index).shape == (8, 8, 8)


def test_rerun_skips_and_append_adds_only_new_chips(
    tmp_path: Path, reference_store: Path, codecs
) -> None:
    path = tmp_path / "append.zarr"
    places = terramind_places(MODS)
    first = encode_places(places[:2], path, codecs, chip_size=64, progress=False)
    assert (first.planned, first.encoded) == (32, 32)
    again = encode_places(places[:2], path, codecs, chip_size=64, progress=False)
    assert (again.encoded, again.already_complete) == (0, 32)
    more = encode_places(places, path, codecs, chip_size=64, progress=False)
    assert (more.planned, more.encoded, more.already_complete) == (64, 32, 32)
    store = LatentStore.open(path)
    assert len(store) == 64 and len(set(store.keys())) == 64 and store.complete.all()
    ref, got = _moments(reference_store), _moments(path)
    for m in MODS:
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-5, atol=1e-5)


def test_other_codec_or_chip_size_is_refused(reference_store: Path, tmp_path: Path, codecs) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(reference_store, copy)
    places = terramind_places(MODS, names={"38D_378R_2_3"})
    other = {"s2l2a": tiny_codec("s2l2a", seed=1), "dem": codecs["dem"]}
    with pytest.raises(ConfigError, match="s2l2a latents were written with codec"):
        encode_places(places, copy, other, chip_size=64, progress=False)
    with pytest.raises(ConfigError, match=r"at chip size 64, this run asks for .* at 32"):
        encode_places(places, copy, codecs, chip_size=32, progress=False)


def test_corrupt_product_is_skipped_logged_and_counted(tmp_path: Path, caplog) -> None:
    root = tmp_path / "Core-S2L2A"
    for product in sorted((DATA / "majortom" / "Core-S2L2A").glob("*/*/*")):
        dest = root / product.relative_to(product.parents[2])
        shutil.copytree(product, dest)
    bad = next(root.glob("0U/*/*")) / "B03.tif"
    bad.write_bytes(bad.read_bytes()[:5000])  # truncated GeoTIFF
    places = list(places_from_majortom({"s2l2a": MajorTOM.from_folder(root)}))
    with caplog.at_level("WARNING"):
        report = encode_places(
            places,
            tmp_path / "s.zarr",
            {"s2l2a": tiny_codec("s2l2a")},
            chip_size=256,
            batch_size=25,
            progress=False,
        )
    assert (report.planned, report.encoded, report.failed) == (50, 25, 25)
    assert "0U_199R" in report.errors[0] and "B03" in report.errors[0]
    assert "could not be encoded" in caplog.text
    table = LatentStore.open(tmp_path / "s.zarr").table()
    assert table[table.place == "0U_199R"].complete.sum() == 0
    assert table[table.place == "199U_1099R"].complete.all()


def test_local_cluster_gives_the_threaded_result(
    tmp_path: Path, reference_store: Path, codecs
) -> None:
    from distributed import Client, LocalCluster

    # processes=False: two worker threads in this process; process workers would spend most of
    # this test's time starting interpreters and importing torch.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        report = encode_places(
            terramind_places(MODS), tmp_path / "d.zarr", codecs, chip_size=64, batch_size=4,
            client=client, progress=False,
        )  # fmt: skip
    assert report.encoded == 64
    ref, got = _moments(reference_store), _moments(tmp_path / "d.zarr")
    for m in MODS:
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-5, atol=1e-5)
    assert (
        LatentStore.open(tmp_path / "d.zarr").table().key.tolist()
        == LatentStore.open(reference_store).table().key.tolist()
    )


_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from _latents_fixtures import terramind_places, tiny_codec
from geocopgen.latents import encode_places

codecs = {{m: tiny_codec(m) for m in {mods!r}}}
for codec in codecs.values():
    fast = codec.encode_moments
    def slow(x, fast=fast):
        time.sleep(0.15)  # a slow autoencoder, so the kill lands mid-run
        return fast(x)
    codec.encode_moments = slow  # instance attribute: weights and codec hash unchanged
encode_places(terramind_places({mods!r}), {path!r}, codecs, chip_size=64, batch_size=2,
              num_workers=2, progress=False)
"""


def test_killed_run_resumes_with_no_duplicate_and_no_missing_chip(
    tmp_path: Path, reference_store: Path, codecs
) -> None:
    path = tmp_path / "killed.zarr"
    script = _SCRIPT.format(tests=str(Path(__file__).parent), mods=MODS, path=str(path))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                done = int(LatentStore.open(path).complete.sum())
            except Exception:  # store not created yet, or metadata mid-write
                continue
            if done >= 12:
                break
        assert proc.poll() is None, "the encoding finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = LatentStore.open(path)
    n_done = int(partial.complete.sum())
    assert 12 <= n_done < 64 and len(partial) == 64  # the whole plan is recorded up front
    report = encode_places(terramind_places(MODS), path, codecs, chip_size=64, progress=False)
    assert report.already_complete == n_done and report.encoded == 64 - n_done
    store = LatentStore.open(path)
    assert len(store) == 64 and len(set(store.keys())) == 64 and store.complete.all()
    ref, got = _moments(reference_store), _moments(path)
    for m in MODS:
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-5, atol=1e-5)


def test_dataset_augments_all_modalities_alike(reference_store: Path) -> None:
    plain = LatentDataset(reference_store, augment=False)
    aug = LatentDataset(reference_store, augment=True, seed=3)
    assert len(plain) == 64
    seen = set()
    for i in range(12):
        a, p = aug[i], plain[i]
        matches = [t for t in DIHEDRAL if torch.equal(dihedral(p["dem"], *t), a["dem"])]
        assert matches, "the DEM latent is not a symmetry of the stored one"
        assert any(torch.equal(dihedral(p["s2l2a"], *t), a["s2l2a"]) for t in matches)
        seen.add(matches[0])
    assert len(seen) > 1  # augmentation actually varies
    store = LatentStore.open(reference_store)
    mean = torch.from_numpy(store.moments("dem", int(plain.indices[0]))[:4])
    assert torch.equal(plain[0]["dem"], mean)  # scaling factor 1.0 in the tiny codec
    sampled = LatentDataset(reference_store, ["dem"], augment=False, sample=True, seed=0)
    assert list(sampled[0]) == ["dem"] and not torch.equal(sampled[0]["dem"], mean)
    with pytest.raises(ConfigError, match="no s1rtc latents"):
        LatentDataset(reference_store, ["s1rtc"])


def test_min_valid_filters_chips(tmp_path: Path) -> None:
    place = terramind_places(["dem"], names={"38D_378R_2_3"})[0]
    dem = place.arrays["dem"]
    holed = dem.where((dem.x < dem.x[100]) | (dem.y > dem.y[100]))  # NaN in one quadrant
    path = tmp_path / "holes.zarr"
    encode_places(
        [Place("holed", {"dem": holed})],
        path,
        {"dem": tiny_codec("dem")},
        chip_size=64,
        progress=False,
    )
    table = LatentStore.open(path).table()
    ok = np.isfinite(holed.values[0])
    want = [
        ok[r : r + 64, c : c + 64].mean() for r, c in zip(table.row_off, table.col_off, strict=True)
    ]
    np.testing.assert_allclose(table.valid_dem, want, rtol=0, atol=1e-7)
    assert table.valid_dem.min() == 0.0 and table.valid_dem.max() == 1.0
    assert len(LatentDataset(path, min_valid=1.0)) == int((table.valid_dem == 1.0).sum())
