# ruff: noqa: F811  (copgen_model: a fixture imported from test_copgen_translate)
"""Fine-tuning a COP-GEN-layout model on a user's own rasters, through the CLI: `geocopgen encode
folder --model` writes a per-slot latent store, `geocopgen train backbone` fine-tunes the
fixture-size model converted from the parity fixtures on it (exact resume, DDP equal to one
process, frozen parameters untouched, fresh slots), and `geocopgen translate --model` runs the
result on a real raster with the base model's georeference."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from conftest import terramind
from safetensors.torch import load_file
from test_copgen_translate import copgen_model  # noqa: F401  (the fixture model folder)
from typer.testing import CliRunner

from geocopgen.cli import app
from geocopgen.copgen.model import CopgenModel
from geocopgen.errors import ConfigError
from geocopgen.latents.encode import codec_identity
from geocopgen.latents.store import LatentStore
from geocopgen.training.config import TrainConfig, config_from_dict
from geocopgen.training.copgen import fresh_slots, train_copgen

PLACES = ("38D_378R_2_3", "637U_59R_1_3")
MODALITIES = ("S2L2A", "S1RTC", "DEM")
WEIGHTS = "diffusion_pytorch_model.safetensors"
FROZEN = "in_blocks.*"


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> Path:
    """Two TerraMind places (S2 L2A, S1 RTC, DEM), one folder per modality."""
    root = tmp_path_factory.mktemp("rasters")
    for m in MODALITIES:
        (root / m).mkdir()
        for place in PLACES:
            (root / m / f"{place}.tif").symlink_to(terramind(m, place))
    return root


@pytest.fixture(scope="module")
def store(rasters, copgen_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "latents.zarr"
    cli("encode", "folder", str(rasters), "--output", str(out), "--model", str(copgen_model))
    return out


def write_config(folder: Path, store: Path, init: Path, steps: int) -> Path:
    path = folder / f"config_{steps}.yaml"
    values = {
        "model": {"init": str(init), "freeze": [FROZEN]},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "loop": {"steps": steps, "batch_size": 4, "ckpt_every": 2, "progress": False},
        "data": {"store": str(store)},
    }
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def single(store, copgen_model, tmp_path_factory) -> Path:
    """Four fine-tuning steps in one go."""
    tmp = tmp_path_factory.mktemp("single")
    cli(
        "train",
        "backbone",
        str(write_config(tmp, store, copgen_model, 4)),
        "--output",
        str(tmp / "run"),
    )
    return tmp / "run"


def test_store_holds_each_slot_at_its_size_and_a_rerun_skips(rasters, store, copgen_model):
    s = LatentStore.open(store)
    assert s.kind == "copgen" and s.chip_size == 192
    shapes = {k: s.group[f"moments/{k}"].shape[1:] for k in s.modalities}
    assert shapes == {
        "S2L2A_B02_B03_B04_B08": (16, 24, 24),
        "S2L2A_B05_B06_B07_B11_B12_B8A": (16, 12, 12),
        "S2L2A_B01_B09": (16, 4, 4),
        "S1RTC_vh_vv": (16, 24, 24),
        "DEM_DEM": (16, 8, 8),
    }
    table = s.table()
    # 224 px places: origins at 0 and 30 px, the last 60 m step where a 1920 m chip fits
    want = {f"{p}|{r}|{c}" for p in PLACES for r in (0, 30) for c in (0, 30)}
    assert set(table.key) == want and table.complete.all()
    assert np.allclose(
        table[table.key == f"{PLACES[0]}|0|0"][["lon", "lat"]], (34.0646, -3.3999), atol=1e-3
    )
    assert all(s.codecs[k]["codec"]["name"] == str(copgen_model) for k in s.modalities)
    out = cli(
        "encode", "folder", str(rasters), "--output", str(store), "--model", str(copgen_model)
    )
    assert "0 encoded, 8 already complete" in out


def test_finetune_resumes_exactly_keeps_frozen_weights_and_translates(
    single,
    store,
    copgen_model,
    tmp_path,
):
    cut = tmp_path / "cut"
    cli(
        "train",
        "backbone",
        str(write_config(tmp_path, store, copgen_model, 2)),
        "--output",
        str(cut),
    )
    cli(
        "train",
        "backbone",
        str(write_config(tmp_path, store, copgen_model, 4)),
        "--output",
        str(cut),
    )
    whole = load_file(single / "model" / "backbone" / WEIGHTS)
    resumed = load_file(cut / "model" / "backbone" / WEIGHTS)
    base = load_file(Path(copgen_model) / "backbone" / WEIGHTS)
    for k, v in whole.items():
        assert torch.equal(resumed[k], v), k  # bit-identical after a cut
        if k.startswith("in_blocks."):
            assert torch.equal(v, base[k]), k  # frozen: untouched, EMA included
    assert any(not torch.equal(v, base[k]) for k, v in whole.items())  # the rest trained
    model = CopgenModel.from_pretrained(single / "model")
    assert model.provenance["fine_tune"]["init"] == str(copgen_model)
    assert model.provenance["fine_tune"]["steps"] == 4
    grids = {}
    for name, folder in (("base", copgen_model), ("tuned", single / "model")):
        out = tmp_path / f"{name}.tif"
        cli("translate", str(terramind("S2L2A")), "--to", "dem", "-o", str(out),
            "--model", str(folder), "--date", "2021-07-15", "--steps", "2")  # fmt: skip
        with rasterio.open(out) as src:
            grids[name] = (src.crs, src.transform, src.shape, src.count)
            assert np.isfinite(src.read()).any()
    assert grids["tuned"] == grids["base"]


def test_two_process_torchrun_equals_one_process(single, store, copgen_model, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cfg = write_config(tmp_path, store, copgen_model, 4)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", port, "-m", "geocopgen",
           "-q", "train", "backbone", str(cfg), "--output", str(tmp_path / "ddp")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    one = load_file(single / "model" / "backbone" / WEIGHTS)
    two = load_file(tmp_path / "ddp" / "model" / "backbone" / WEIGHTS)
    # two half-batch gradients averaged: another summation order (see test_training_stages)
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=1e-5, atol=5e-6)


def test_new_slots_start_fresh_and_a_freeze_typo_is_refused(copgen_model, store, tmp_path):
    backbone = CopgenModel.from_pretrained(copgen_model).backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    fresh_slots(backbone, ["DEM_DEM"], seed=0)
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])}
    i = backbone.modality_names.index("DEM_DEM")
    slot_params = {f"patch_embeds.{i}.proj.weight", f"patch_embeds.{i}.proj.bias"}
    slot_params |= {f"decoder_preds.{i}.weight", f"decoder_preds.{i}.bias", "pos_embed"}
    assert changed == slot_params
    start, n = backbone._pos_start["DEM_DEM"], backbone.geometry["DEM_DEM"].n_tokens
    rows = torch.ones(backbone.pos_embed.shape[1], dtype=torch.bool)
    rows[[i, *range(start, start + n)]] = False
    assert torch.equal(backbone.pos_embed[:, rows], before["pos_embed"][:, rows])
    bad = config_from_dict(
        TrainConfig,
        {
            "model": {"init": str(copgen_model), "freeze": ["inblocks.*"]},
            "data": {"store": str(store)},
        },
    )
    with pytest.raises(ConfigError, match="matches no parameter"):
        train_copgen(bad, tmp_path / "bad")
    shutil.rmtree(tmp_path / "bad", ignore_errors=True)


def test_api_encode_decode_round_trip_with_a_copgen_model():
    """encode() gives one latent array per slot on its group's canvas; decode() brings them back
    onto the input grid. The bundled model's DEM codec keeps patch means: 0.3 m in the interior
    (the last 30 m column overhangs the 224 px tile and is filled as invalid: see the notes)."""
    from geocopgen import api
    from geocopgen.raster.grid import grid_of

    latents = api.encode(terramind("DEM"), model="default", progress=False)
    assert list(latents) == ["DEM_DEM"]
    assert latents["DEM_DEM"].shape == (8, 10, 10)  # 2400 m canvas, 240 m latent cells
    assert latents["DEM_DEM"].rio.resolution() == (240.0, -240.0)
    back = api.decode(latents, model="default", progress=False)
    dem = api.open_inputs(terramind("DEM"))["dem"].array
    assert grid_of(back) == grid_of(dem) and back.attrs["modality"] == "dem"
    assert np.nanmean(np.abs(back.values - dem.values)[:, :192, :192]) < 1.0
    s2 = api.encode(terramind("S2L2A"), model="default", progress=False)
    assert {k: v.shape[1:] for k, v in s2.items()} == {
        "S2L2A_B02_B03_B04_B08": (30, 30),
        "S2L2A_B05_B06_B07_B11_B12_B8A": (15, 15),
        "S2L2A_B01_B09": (5, 5),
    }


def test_a_new_slot_takes_the_stores_codec_and_scratch_training_exports(
    copgen_model, store, tmp_path
):
    """An init model without a DEM codec learns the DEM as a new slot (fresh rows, the codec
    that wrote the store adopted); and a small backbone trains from scratch on the store."""
    full = CopgenModel.from_pretrained(copgen_model)
    vaes = {k: v for k, v in full.vaes.items() if k != "DEM_DEM"}
    CopgenModel(full.backbone, vaes, size=full.size).save_pretrained(tmp_path / "no_dem")
    loop = {"steps": 2, "batch_size": 4, "progress": False}
    runs = {
        "new": {"init": str(tmp_path / "no_dem"), "new_slots": ["DEM_DEM"]},
        "scratch": {"backbone": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 2}},
    }
    for name, model in runs.items():
        values = {"model": model, "loop": loop, "data": {"store": str(store)}}
        train_copgen(config_from_dict(TrainConfig, values), tmp_path / name)
    new = CopgenModel.from_pretrained(tmp_path / "new" / "model")
    assert "DEM_DEM" in new.vaes and new.provenance["fine_tune"]["new_slots"] == ["DEM_DEM"]
    store_hash = LatentStore.open(store).codecs["DEM_DEM"]["codec"]["hash"]
    assert codec_identity(new.vaes["DEM_DEM"])["hash"] == store_hash
    scratch = CopgenModel.from_pretrained(tmp_path / "scratch" / "model")
    assert scratch.backbone.config.embed_dim == 32 and scratch.size is None
    assert set(scratch.vaes) == set(full.vaes)
    with pytest.raises(ConfigError, match=r"list DEM_DEM in model\.new_slots"):
        values = {"model": {"init": str(tmp_path / "no_dem")}, "data": {"store": str(store)}}
        train_copgen(config_from_dict(TrainConfig, values), tmp_path / "refused")


def test_the_wall_time_budget_stops_and_exports(copgen_model, store, tmp_path):
    values = {
        "model": {"init": str(copgen_model)},
        "loop": {"steps": 50, "batch_size": 2, "minutes": 1e-9, "progress": False},
        "data": {"store": str(store)},
    }
    result = train_copgen(config_from_dict(TrainConfig, values), tmp_path / "run")
    assert result.train.step == 1  # the budget is spent after the first step
    assert CopgenModel.from_pretrained(result.model_dir).provenance["fine_tune"]["steps"] == 1
