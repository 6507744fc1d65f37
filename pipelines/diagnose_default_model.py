"""Diagnose a trained pipeline on its own training latents: does it use its conditions, and are
its samples on the data's scale?

    python pipelines/diagnose_default_model.py [--model geocopgen/weights/default]
        [--store work/default-model/latents.zarr]

Uses the unshifted chip of each place in the store (``<place>+00+00``). Prints, per direction:

1. the error (MSE) of the clean latent the network implies at several timesteps, with the
   **right** condition (the same place), a **wrong** one (another place) and **none**: a model
   that uses its condition is clearly better with the right one, most of all at high noise,
   where the noisy target itself says little. Clean-latent errors put noise- and
   velocity-predicting models on one scale;
2. the standard deviation of sampled latents next to the real latents': a sampler whose
   samples are much wider than the data is amplifying the denoiser's errors at high noise.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from geocopgen.latents import LatentStore
from geocopgen.models import CopGenPipeline
from geocopgen.models.autoencoder import sample_latents
from geocopgen.models.schedule import model_timestep, predicted_clean, training_scheduler

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = (("s2l2a", "dem"), ("s2l1c", "s2l2a"), ("s2l2a", "s1rtc"))
TIMESTEPS = (999, 700, 500, 200, 50)


def place_latents(pipe: CopGenPipeline, store: LatentStore) -> dict[str, torch.Tensor]:
    """Scaled posterior-mean latents of every place's unshifted chip, stacked per modality."""
    table = store.table()
    rows = table.index[table.key.str.contains(r"\+00\+00\|", regex=True)].tolist()
    if len(rows) < 2:
        raise SystemExit(f"{store.path}: needs at least two places' unshifted chips")
    out = {}
    for m in store.modalities:
        scale = pipe.autoencoders[m].config.scaling_factor
        moments = torch.from_numpy(store.moments(m, rows))
        out[m] = sample_latents(moments, scale, sample=False)
    return out


@torch.inference_mode()
def clean_errors(pipe: CopGenPipeline, lat: dict[str, torch.Tensor], cond: str, target: str):
    """Per timestep: clean-latent MSE with the right, a wrong, and no condition."""
    scheduler = training_scheduler(pipe.scheduler.config.prediction_type)
    generator = torch.Generator().manual_seed(0)
    for t in TIMESTEPS:
        x0 = lat[target]
        noise = torch.randn(x0.shape, generator=generator)
        steps = torch.full((x0.shape[0],), t, dtype=torch.long)
        noisy = scheduler.add_noise(x0, noise, steps)
        errors = []
        for condition in (lat[cond], lat[cond].roll(1, 0), None):
            latents, times = {target: noisy}, {target: model_timestep(steps)}
            if condition is not None:
                latents[cond], times[cond] = condition, torch.zeros(x0.shape[0])
            pred = pipe.backbone(latents, times).sample[target]
            clean = predicted_clean(scheduler, noisy, pred, steps)
            errors.append(float((clean - x0).pow(2).mean()))
        yield t, errors


def sample_spread(pipe: CopGenPipeline, lat: dict[str, torch.Tensor], cond: str, target: str):
    """(std of sampled latents, std of the real ones, MSE of samples to the real ones)."""
    out = pipe(
        [target],
        condition_latents={cond: lat[cond]},
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        progress=False,
    )
    made = out.latents[target].reshape(lat[target].shape)
    real = lat[target]
    return float(made.std()), float(real.std()), float((made - real).pow(2).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "geocopgen" / "weights" / "default"))
    parser.add_argument("--store", default=str(REPO / "work" / "default-model" / "latents.zarr"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    pipe = CopGenPipeline.from_pretrained(args.model)
    lat = place_latents(pipe, LatentStore.open(args.store))
    for cond, target in DIRECTIONS:
        print(f"{cond} -> {target}: clean-latent MSE (right | wrong | no condition)")
        for t, (right, wrong, none) in clean_errors(pipe, lat, cond, target):
            print(f"  t={t:<4} {right:.3f} | {wrong:.3f} | {none:.3f}")
        made, real, mse = sample_spread(pipe, lat, cond, target)
        print(f"  sampled latents: std {made:.2f} (real {real:.2f}), MSE to the real {mse:.2f}")


if __name__ == "__main__":
    main()
