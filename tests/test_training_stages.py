"""The two training stages through their real entry points, on the real TerraMind tiles.

Models are tiny; what is under test is that each stage wires the loop correctly: a stopped run
resumes to the same weights as an uninterrupted one, two DDP processes train the backbone as one
process does, the exports load, and bad stores and configs fail with named errors.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _latents_fixtures import TERRAMIND, terramind_places, tiny_codec
from safetensors.torch import load_file

from geocopgen.errors import ConfigError, DataSourceError
from geocopgen.latents import encode_places
from geocopgen.latents.store import LatentStore
from geocopgen.modalities import get_modality
from geocopgen.models import CopGenPipeline, ModalityAutoencoder
from geocopgen.models.checkpoints import save_model
from geocopgen.training import config_from_dict, train_autoencoder, train_backbone
from geocopgen.training.autoencoder import RasterCrops, open_on_model_grid
from geocopgen.training.config import TrainConfig
from geocopgen.training.distributed import DistInfo

MODS = ("s2l2a", "dem")
WEIGHTS = "diffusion_pytorch_model.safetensors"


# --- stage 1 ----------------------------------------------------------------------------------
def ae_config(steps: int, **over) -> TrainConfig:
    values = {
        "model": {
            "modality": "s1rtc",
            "latent_channels": 4,
            "block_out_channels": [8, 8, 16, 16],
            "norm_num_groups": 4,
            "mid_block_add_attention": False,
        },
        "data": {
            "sources": [str(TERRAMIND / "S1RTC" / "*.tif")],
            "crop_size": 32,
            "scaling_crops": 4,
        },
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "ema": {"decay": 0.9},
        "loop": {
            "steps": steps,
            "batch_size": 2,
            "ckpt_every": 2,
            "log_every": 1,
            "progress": False,
        },
    }
    for section, changes in over.items():
        values[section] = {**values[section], **changes}
    return config_from_dict(TrainConfig, values)


def test_autoencoder_stage_resumes_exactly_and_exports(tmp_path: Path) -> None:
    straight = train_autoencoder(ae_config(4), tmp_path / "straight", dist_info=DistInfo())
    train_autoencoder(ae_config(2), tmp_path / "split", dist_info=DistInfo())
    resumed = train_autoencoder(ae_config(4), tmp_path / "split", dist_info=DistInfo())
    assert resumed.train.step == 4 and len(resumed.train.history) == 2  # only steps 3 and 4 ran
    a = load_file(straight.model_dir / WEIGHTS)
    b = load_file(resumed.model_dir / WEIGHTS)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ae = ModalityAutoencoder.from_pretrained(str(resumed.model_dir))
    assert ae.config.modality == "s1rtc"
    assert ae.config.scaling_factor == pytest.approx(resumed.extra["scaling_factor"])
    assert ae.config.scaling_factor != 1.0
    assert set(resumed.train.history[-1]) >= {"loss", "s1rtc", "kl"}


def test_tiles_smaller_than_the_crop_are_reflection_padded_as_the_engine_pads_them() -> None:
    s1 = get_modality("s1rtc")
    arrays = [open_on_model_grid(str(TERRAMIND / "S1RTC" / "38D_378R_2_3.tif"), s1)]
    crops = RasterCrops(arrays, s1, 256, augment=False)
    item = crops[0]
    assert item["x"].shape == (2, 256, 256)
    assert int(item["mask"].sum()) == 224 * 224 and not item["mask"][224:].any()
    tile = s1.normalize(arrays[0].values)
    np.testing.assert_allclose(item["x"][:, :224, :224].numpy(), tile, rtol=1e-6)
    np.testing.assert_allclose(item["x"][:, 224 + 5, :224].numpy(), tile[:, 224 - 7], rtol=1e-6)


def test_autoencoder_stage_reports_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) kl_wieght"):
        train_autoencoder(ae_config(2, model={"kl_wieght": 1.0}), tmp_path / "a")
    with pytest.raises(ConfigError, match="no file"):
        train_autoencoder(
            ae_config(2, data={"sources": [str(TERRAMIND / "nope*.tif")]}), tmp_path / "b"
        )
    with pytest.raises(ConfigError, match=r"not more than half of data\.crop_size=512"):
        train_autoencoder(ae_config(2, data={"crop_size": 512}), tmp_path / "c")
    train_autoencoder(ae_config(2), tmp_path / "d", dist_info=DistInfo())
    with pytest.raises(ConfigError, match=r"model.kl_weight: checkpoint None, now 0.5"):
        train_autoencoder(
            ae_config(4, model={"kl_weight": 0.5}), tmp_path / "d", dist_info=DistInfo()
        )


# --- stage 2 ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two TerraMind places encoded at 64 px chips (16 chips each) by saved tiny codecs."""
    root = tmp_path_factory.mktemp("stage2")
    folders = {}
    for m in MODS:
        save_model(tiny_codec(m), root / "codecs" / m)
        folders[m] = str(root / "codecs" / m)
    codecs = {m: ModalityAutoencoder.from_pretrained(p).eval() for m, p in folders.items()}
    places = terramind_places(MODS, names={"38D_378R_2_3", "637U_59R_1_3"})
    encode_places(places, root / "latents.zarr", codecs, chip_size=64, progress=False)
    return root / "latents.zarr", folders


def bb_config(store_path: Path, codecs: dict[str, str], steps: int, **data) -> TrainConfig:
    return config_from_dict(
        TrainConfig,
        {
            "model": {"embed_dim": 32, "depth": 2, "num_heads": 4, "patch_size": 2},
            "data": {"store": str(store_path), "autoencoders": codecs, **data},
            "optim": {"lr": 3e-3, "warmup_steps": 2},
            "ema": {"decay": 0.9},
            "loop": {"steps": steps, "batch_size": 4, "ckpt_every": 2, "progress": False},
        },
    )


def same_checkpoint(a: Path, b: Path) -> None:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    for k in x:
        assert torch.equal(x[k], y[k]), k


def test_backbone_stage_resumes_exactly_and_exports_a_pipeline(store, tmp_path: Path) -> None:
    path, codecs = store
    straight = train_backbone(
        bb_config(path, codecs, 4), tmp_path / "straight", dist_info=DistInfo()
    )
    train_backbone(bb_config(path, codecs, 2), tmp_path / "split", dist_info=DistInfo())
    resumed = train_backbone(bb_config(path, codecs, 4), tmp_path / "split", dist_info=DistInfo())
    same_checkpoint(
        tmp_path / "straight/checkpoints/step-00000004",
        tmp_path / "split/checkpoints/step-00000004",
    )
    pipe = CopGenPipeline.from_pretrained(resumed.model_dir)
    assert pipe.modalities == ("dem", "s2l2a")  # the official slot order, not the store's
    assert set(pipe.autoencoders) == set(MODS)
    assert pipe.backbone.config.latent_size == 8
    assert pipe.scheduler.config.prediction_type == "epsilon"  # the default, as the official
    assert straight.extra["chips"] == 32


def test_backbone_stage_exports_the_prediction_type_it_trained(store, tmp_path: Path) -> None:
    path, codecs = store
    config = bb_config(path, codecs, 2)
    config = replace(config, model={**config.model, "prediction_type": "v_prediction"})
    result = train_backbone(config, tmp_path / "v", dist_info=DistInfo())
    pipe = CopGenPipeline.from_pretrained(result.model_dir)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    config = replace(config, model={**config.model, "prediction_type": "x0"})
    with pytest.raises(ConfigError, match="prediction_type must be one of"):
        train_backbone(config, tmp_path / "w", dist_info=DistInfo())


def test_backbone_stage_holds_out_places(store, tmp_path: Path) -> None:
    path, codecs = store
    result = train_backbone(
        bb_config(path, codecs, 1, exclude_places=["38D*"]), tmp_path, dist_info=DistInfo()
    )
    assert result.extra["chips"] == 16
    with pytest.raises(ConfigError, match="no chip is left to train on"):
        train_backbone(bb_config(path, codecs, 1, include_places=["nowhere"]), tmp_path / "x")


def test_backbone_stage_refuses_bad_stores(store, tmp_path: Path) -> None:
    path, codecs = store
    with pytest.raises(DataSourceError, match="no latent store here"):
        train_backbone(bb_config(tmp_path / "missing.zarr", codecs, 1), tmp_path / "a")
    empty = tmp_path / "empty.zarr"
    LatentStore.create_or_open(
        empty,
        codecs={"dem": {"name": "x", "hash": "0"}},
        latent_shape={"dem": (8, 8, 8)},
        chip_size=64,
    )
    with pytest.raises(ConfigError, match="no complete chip"):
        train_backbone(bb_config(empty, {}, 1), tmp_path / "b")
    with pytest.raises(ConfigError, match="has no s1rtc latents"):
        train_backbone(bb_config(path, codecs, 1, modalities=["s1rtc"]), tmp_path / "c")
    save_model(tiny_codec("dem", seed=1), tmp_path / "other_dem")
    wrong = {**codecs, "dem": str(tmp_path / "other_dem")}
    with pytest.raises(ConfigError, match="did not write the latents"):
        train_backbone(bb_config(path, wrong, 1), tmp_path / "d")
    with pytest.raises(ConfigError, match=r"data: unknown key\(s\) stores"):
        train_backbone(config_from_dict(TrainConfig, {"data": {"stores": "x"}}), tmp_path / "e")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, path: str, codecs: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    train_backbone(bb_config(Path(path), codecs, 3), out, dist_info=DistInfo(rank, world, 0))
    torch.distributed.destroy_process_group()


def test_backbone_stage_two_process_ddp_equals_single_process(store, tmp_path: Path) -> None:
    path, codecs = store
    train_backbone(bb_config(path, codecs, 3), tmp_path / "single", dist_info=DistInfo())
    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path / "ddp"), str(path), codecs),
        nprocs=2,
        join=True,
    )
    single = load_file(tmp_path / "single/checkpoints/step-00000003/model.safetensors")
    ddp = load_file(tmp_path / "ddp/checkpoints/step-00000003/model.safetensors")
    # DDP averages two half-batch gradients, a different summation order from one batch; Adam
    # divides by sqrt(v), so on parameters whose gradient is near zero that rounding grows: up
    # to 1.3e-6 after 3 steps on this CPU's kernels (the step size is 3e-3, so a real error in
    # the gradient would show as 1e-3).
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=5e-6)
