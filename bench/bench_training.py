"""Backbone training throughput as a share of the backbone's bare forward+backward speed.

Prints, all measured in this run on the default-model recipe's backbone config and latent store:

* bare forward+backward of the backbone on random latents, all 4 modalities present (the
  ``bench/bench_backbone.py`` measurement, for this config), in samples/s and GFLOP/s;
* full training steps of ``geocopgen.training.Trainer`` (store reads, posterior sampling,
  augmentation, role/timestep/noise draws, loss, AdamW, EMA) in samples/s, the average number of
  modalities present per batch, and the achieved GFLOP/s;
* training throughput as a share of the bare forward+backward, per sample and per FLOP;
* peak RSS.

Run after ``python pipelines/train_default_model.py`` (it needs that run's latent store):
``python bench/bench_training.py [--steps 30]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the recipe

import argparse
import importlib.util
import resource
import tempfile
import time
from pathlib import Path

import torch
import yaml

from geocopgen.latents.dataset import LatentDataset
from geocopgen.training import Trainer, config_from_dict
from geocopgen.training.backbone_stage import (
    backbone_sections,
    build_backbone,
    chip_subset,
    draw_sample_roles,
    make_loss,
    open_training_store,
)
from geocopgen.training.config import TrainConfig
from geocopgen.training.distributed import DistInfo

REPO = Path(__file__).resolve().parents[1]


def _bench_backbone():
    spec = importlib.util.spec_from_file_location(
        "bench_backbone", REPO / "bench/bench_backbone.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO / "work/default-model/latents.zarr")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    bb_bench = _bench_backbone()
    values = yaml.safe_load((REPO / "pipelines/configs/default_backbone.yaml").read_text())
    values["data"].update(store=str(args.store), autoencoders={})
    values["loop"].update(progress=False, val_every=0)
    config = config_from_dict(TrainConfig, values)
    spec, data = backbone_sections(config)
    store, mods = open_training_store(data)
    batch = config.loop.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}")

    torch.manual_seed(0)
    bb = build_backbone(spec, store, mods).train()
    grid = bb.grid_size
    flops4 = 3 * bb_bench.forward_flops(bb, 4, grid)  # forward + backward ≈ 3 forwards
    bare = bb_bench.bench(bb, list(mods), batch, args.reps, backward=True)
    bare_rate = batch / bare
    print(
        f"bare forward+backward, 4 modalities: {bare_rate:7.2f} samples/s  "
        f"{flops4 * bare_rate / 1e9:6.1f} GFLOP/s"
    )

    dataset = chip_subset(LatentDataset(store, mods, augment=True, sample=True), (), ())
    loss_fn = make_loss(mods, spec.roles, config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            build_backbone(spec, store, mods), dataset, loss_fn, config, tmp, dist_info=DistInfo()
        )
        trainer.train_step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        seconds = time.perf_counter() - t0
    rate = batch * args.steps / seconds
    # FLOPs per training sample: the token count depends on the modalities present, drawn per
    # step exactly as training draws them
    draws = [
        len(draw_sample_roles(mods, spec.roles, step, torch.arange(batch)).present)
        for step in range(500)
    ]
    mean_present = sum(draws) / len(draws)
    train_flops = 3 * sum(bb_bench.forward_flops(bb, k, grid) for k in draws) / len(draws)
    print(
        f"training steps (Trainer, real store):  {rate:7.2f} samples/s  "
        f"{train_flops * rate / 1e9:6.1f} GFLOP/s  "
        f"({mean_present:.2f} of {len(mods)} modalities present on average)"
    )
    print(
        f"training / bare forward+backward: {rate / bare_rate:.2f} per sample, "
        f"{(train_flops * rate) / (flops4 * bare_rate):.2f} per FLOP"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
