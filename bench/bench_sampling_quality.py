"""Sample quality against step count: DPM-Solver++ 10/20/50 steps vs the 50-step official preset.

The model is the overfit one of ``tests/test_models_overfit.py``, trained a little longer here: a
tiny backbone on the latents of two real TerraMind places (S2L2A and DEM, 64 px centre crops,
small random-initialised autoencoders with fitted scale). For each sampler it prints, for
S2L2A→DEM over 2 places x 8 seeds:

* ``MSE to truth``: latent MSE of the sampled DEM latent against the true DEM latent;
* ``MSE to ref``: latent MSE against a 200-step DPM-Solver++ solution from the *same* initial
  noise, i.e. the solver's discretisation error, independent of how good the model is.

Both samplers run with ignored modalities omitted, so only the solver differs.
Run: ``python bench/bench_sampling_quality.py [--train-steps 600]``.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from geocopgen.modalities import dn_to_reflectance, get_modality
from geocopgen.models import (
    ModalityAutoencoder,
    MultimodalUViT,
    RoleProbabilities,
    default_scheduler,
    diffusion_loss,
    draw_roles,
    fit_scaling_factor,
    generators_from_seeds,
    official_scheduler,
    sample,
    training_scheduler,
)

TERRAMIND = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "terramind"
PLACES = ("38D_378R_2_3", "637U_59R_1_3")
SEEDS = 8


def tile(modality: str, place: str, size: int = 64) -> torch.Tensor:
    mod = get_modality(modality)
    folder = {"s2l2a": "S2L2A", "dem": "DEM"}[mod.name]
    with rasterio.open(TERRAMIND / folder / f"{place}.tif") as src:
        off = (src.height - size) // 2
        data = src.read(window=((off, off + size), (off, off + size))).astype(np.float32)
    if mod.name.startswith("s2"):
        data = dn_to_reflectance(data, 0)  # TerraMind tiles carry no offset metadata
    return torch.from_numpy(mod.normalize(data, axis=0)).unsqueeze(0)


def latents() -> dict[str, torch.Tensor]:
    out = {}
    for i, m in enumerate(("s2l2a", "dem")):
        torch.manual_seed(i)
        ae = ModalityAutoencoder(
            modality=m,
            latent_channels=4,
            block_out_channels=(8, 8, 16, 16),
            norm_num_groups=4,
            mid_block_add_attention=False,
        ).eval()
        images = torch.cat([tile(m, p) for p in PLACES])
        fit_scaling_factor(ae, [images], sample=False)
        with torch.no_grad():
            out[m] = ae.to_latents(images)
    return out


def train(z: dict[str, torch.Tensor], steps: int) -> MultimodalUViT:
    torch.manual_seed(0)
    bb = MultimodalUViT(
        latent_channels=4, latent_size=8, patch_size=2, embed_dim=128, depth=2, num_heads=4
    ).train()
    opt = torch.optim.AdamW(bb.parameters(), lr=3e-3, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    sched, g = training_scheduler(), torch.Generator().manual_seed(0)
    probs = RoleProbabilities(generate=0.5, condition=0.5, absent=0.0)
    batch = {k: v.repeat(8, 1, 1, 1) for k, v in z.items()}
    for _ in range(steps):
        roles = draw_roles(["dem", "s2l2a"], 16, probs, generator=g)
        loss = diffusion_loss(bb, sched, batch, roles, generator=g).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return bb.eval()


def run(bb, z, scheduler, steps: int) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = sample(
        bb,
        scheduler,
        ["dem"],
        {"s2l2a": z["s2l2a"]},
        num_inference_steps=steps,
        num_samples=SEEDS,
        generator=generators_from_seeds(range(2 * SEEDS)),
        progress=False,
    )
    return out.latents["dem"], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=600)
    args = parser.parse_args()
    z = latents()
    t0 = time.perf_counter()
    bb = train(z, args.train_steps)
    print(f"trained {args.train_steps} steps in {time.perf_counter() - t0:.0f} s")
    truth = z["dem"].repeat_interleave(SEEDS, dim=0)
    ref, _ = run(bb, z, default_scheduler(), 200)
    print(f"{'sampler':<34} {'MSE to truth':>12} {'MSE to ref':>11} {'seconds':>8}")
    rows = [(f"DPM-Solver++ 2M, {n} steps", default_scheduler(), n) for n in (10, 20, 50)]
    rows.append(("official preset (DPM-Solver 3S), 50", official_scheduler(), 50))
    rows.append(("DPM-Solver++ 2M, 200 steps (ref)", default_scheduler(), 200))
    for label, scheduler, steps in rows:
        x, secs = run(bb, z, scheduler, steps)
        to_truth = float((x - truth).pow(2).mean())
        to_ref = float((x - ref).pow(2).mean())
        print(f"{label:<34} {to_truth:12.4f} {to_ref:11.5f} {secs:8.2f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
