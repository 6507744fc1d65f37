"""The training loop: exact resumption, DDP equivalence and strict configs, on real tiles.

The model here is deliberately tiny (a two-layer conv net from S2 L2A reflectance to DEM height);
what is under test is the loop's bookkeeping, which does not depend on the model's size.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from geocopgen.errors import ConfigError
from geocopgen.modalities import get_modality
from geocopgen.training import Trainer, config_from_dict, load_config
from geocopgen.training.config import TrainConfig
from geocopgen.training.distributed import DistInfo

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
TILES = ["282D_485L_3_3", "38D_378R_2_3"]
CROP = 32


class CropDataset(Dataset):
    """Random 32 px crops of co-registered L2A and DEM tiles, flipped at random (torch RNG)."""

    def __init__(self) -> None:
        l2a, dem = get_modality("s2l2a"), get_modality("dem")
        self.pairs = []
        for tile in TILES:
            with rasterio.open(DATA / "terramind" / "S2L2A" / f"{tile}.tif") as src:
                x = l2a.normalize(src.read().astype(np.float32) / 10000.0)
            with rasterio.open(DATA / "terramind" / "DEM" / f"{tile}.tif") as src:
                y = dem.normalize(src.read().astype(np.float32))
            self.pairs.append((torch.from_numpy(x), torch.from_numpy(y)))

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.pairs[index % len(self.pairs)]
        r, c = torch.randint(0, x.shape[1] - CROP, (2,)).tolist()
        x, y = x[:, r : r + CROP, c : c + CROP], y[:, r : r + CROP, c : c + CROP]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


def make_model() -> nn.Module:
    torch.manual_seed(1234)
    return nn.Sequential(nn.Conv2d(12, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 1, 1))


def noisy_mse(model: nn.Module, batch, seeds: torch.Tensor):
    """MSE with per-sample input noise drawn from the sample's seed, as diffusion losses do."""
    x, y = batch
    noise = torch.stack(
        [torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    )
    loss = ((model(x + 0.05 * noise) - y) ** 2).mean()
    return loss, {"dem": float(loss.detach())}


def config(steps: int, **loop) -> TrainConfig:
    return config_from_dict(
        TrainConfig,
        {
            "optim": {"lr": 3e-3, "warmup_steps": 3},
            "ema": {"decay": 0.9},
            "loop": {"steps": steps, "batch_size": 4, "progress": False, **loop},
        },
    )


def run(tmp: Path, steps: int, **loop) -> Trainer:
    trainer = Trainer(
        make_model(), CropDataset(), noisy_mse, config(steps, **loop), tmp, dist_info=DistInfo()
    )
    trainer.fit()
    return trainer


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    for k, v in a.ema.shadow.items():
        assert torch.equal(v, b.ema.shadow[k]), k
    assert a.step == b.step
    assert a.scheduler.get_last_lr() == b.scheduler.get_last_lr()


def test_resume_after_stop_continues_exactly(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 12, ckpt_every=5)
    run(tmp_path / "split", 6, ckpt_every=5)
    resumed = run(tmp_path / "split", 12, ckpt_every=5)  # fresh process state, same folder
    assert_same_state(straight, resumed)


def test_resume_after_a_crash_continues_exactly(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 12, ckpt_every=4)
    calls = {"n": 0}

    def crashing(model, batch, seeds):
        calls["n"] += 1
        if calls["n"] == 8:  # dies between checkpoints 4 and 8, losing steps 5..7
            raise KeyboardInterrupt
        return noisy_mse(model, batch, seeds)

    crashed = Trainer(make_model(), CropDataset(), crashing, config(12, ckpt_every=4),
                      tmp_path / "crash", dist_info=DistInfo())  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert (tmp_path / "crash" / "latest").read_text() == "step-00000004"
    resumed = run(tmp_path / "crash", 12, ckpt_every=4)
    assert_same_state(straight, resumed)


def test_resume_refuses_an_incompatible_config(tmp_path: Path) -> None:
    run(tmp_path, 3)
    changed = config_from_dict(
        TrainConfig, {"optim": {"lr": 1e-2}, "loop": {"steps": 6, "batch_size": 4}}
    )
    trainer = Trainer(make_model(), CropDataset(), noisy_mse, changed, tmp_path,
                      dist_info=DistInfo())  # fmt: skip
    with pytest.raises(ConfigError, match=r"optim.lr: checkpoint 0.003, now 0.01"):
        trainer.fit()


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  learning_rate: 3\nloop:\n  steps: 5\n")
    with pytest.raises(ConfigError, match=r"train.yaml.optim: unknown key\(s\) learning_rate"):
        load_config(path)
    toml = tmp_path / "train.toml"
    toml.write_text("[loop]\nsteps = 5\nbatch_size = 8\n")
    assert load_config(toml).loop.batch_size == 8


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        Trainer(make_model(), [], noisy_mse, config(2), tmp_path, dist_info=DistInfo())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    trainer = Trainer(make_model(), CropDataset(), noisy_mse, config(6), Path(out),
                      dist_info=DistInfo(rank, world, 0))  # fmt: skip
    trainer.fit(resume=False)
    torch.distributed.destroy_process_group()


def test_two_process_ddp_equals_single_process(tmp_path: Path) -> None:
    single = run(tmp_path / "single", 6)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp = Trainer(make_model(), CropDataset(), noisy_mse, config(6), tmp_path / "ddp",
                  dist_info=DistInfo())  # fmt: skip
    ddp.resume()
    assert ddp.step == 6
    init = make_model().state_dict()
    assert not torch.allclose(single.model.state_dict()["0.weight"], init["0.weight"])
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)
