"""A tiny backbone trained for a few hundred steps on the latents of two real places learns
S2L2A → DEM: sampling the DEM latent from each place's S2L2A latent lands far closer to that
place's true DEM latent than at initialisation.

Metric: latent MSE between the sampled DEM latent (DPM-Solver++, 20 steps, fixed seeds) and the
true DEM latent of the same place, averaged over places and 4 samples each. The codecs are small
random-initialised ``ModalityAutoencoder``s with data-fitted scale factors: the test is about the
diffusion mechanics (roles, absence, objective, sampler), not about image quality.
"""

from __future__ import annotations

import pytest
import torch
from _models_fixtures import read_tile, tiny_autoencoder, tiny_backbone

from geocopgen.models import (
    RoleProbabilities,
    default_scheduler,
    diffusion_loss,
    draw_roles,
    fit_scaling_factor,
    generators_from_seeds,
    sample,
    training_scheduler,
)

PLACES = ("38D_378R_2_3", "637U_59R_1_3")  # Tanzania (~1200 m) and Denmark (~10 m)
STEPS = 600


def _latents() -> dict[str, torch.Tensor]:
    out = {}
    for i, m in enumerate(("s2l2a", "dem")):
        images = torch.cat([read_tile(m, p, size=64) for p in PLACES])
        ae = tiny_autoencoder(m, seed=i)
        fit_scaling_factor(ae, [images], sample=False)
        with torch.no_grad():
            out[m] = ae.to_latents(images)  # (2, 4, 8, 8)
    return out


def _sampled_dem_error(bb, z: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(MSE to the own place's DEM latent, MSE to the other place's) over 4 samples each."""
    out = sample(
        bb,
        default_scheduler(),
        ["dem"],
        {"s2l2a": z["s2l2a"]},
        num_inference_steps=20,
        num_samples=4,
        generator=generators_from_seeds(range(8)),
        progress=False,
    )
    dem = out.latents["dem"].reshape(2, 4, *z["dem"].shape[1:])
    own = (dem - z["dem"][:, None]).pow(2).mean()
    other = (dem - z["dem"].flip(0)[:, None]).pow(2).mean()
    return float(own), float(other)


@pytest.fixture
def one_thread():
    """Tiny models are all small ops: one thread is as fast and far steadier on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_backbone_overfits_two_real_places(one_thread):
    z = _latents()
    bb = tiny_backbone(embed_dim=128, depth=2, seed=0)
    before, _ = _sampled_dem_error(bb, z)

    bb.train()
    opt = torch.optim.AdamW(bb.parameters(), lr=3e-3, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    sched, g = training_scheduler(), torch.Generator().manual_seed(0)
    probs = RoleProbabilities(generate=0.5, condition=0.5, absent=0.0)
    batch = {k: v.repeat(8, 1, 1, 1) for k, v in z.items()}  # 16 samples, both places
    for _ in range(STEPS):
        roles = draw_roles(["dem", "s2l2a"], 16, probs, generator=g)  # s1rtc, s2l1c absent
        loss = diffusion_loss(bb, sched, batch, roles, generator=g).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    bb.eval()
    after, other = _sampled_dem_error(bb, z)
    print(f"S2L2A→DEM latent MSE: before {before:.4f}, after {after:.4f}, wrong place {other:.4f}")
    assert after < 0.01 * before
    assert after < 0.5 * other  # it maps each place's S2L2A to that place's DEM
