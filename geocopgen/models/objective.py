"""The training objective: epsilon or velocity prediction with a role per modality.

Every training sample gives each modality one role:

* **generate**: noised to an independent diffusers timestep uniform in 0..999 (the official
  1..1000), and its prediction (the noise, or the velocity for ``v_prediction`` schedulers, see
  :mod:`geocopgen.models.schedule`) enters the loss;
* **condition**: clean, model timestep 0, no loss;
* **absent**: left out of the token sequence.

Batching decision: the *absent* set is drawn once per batch, the generate/condition split per
sample. The forward needs one token set per batch, and realising per-sample absence with a
key-padding mask would spend the compute that omitting tokens saves, which is the reason absence
exists (S2L2A→DEM on two modalities' tokens). Over many steps every absent pattern is still seen
with its configured probability, so the gradient is unbiased across steps; only within-batch
diversity of absent patterns is lost. Each sample has at least one generated modality (if the
draw gives none, one present modality is picked uniformly), and each batch at least one present.

The loss per sample is the sum over its generated modalities of the MSE over (C, H, W), as in the
official code, then the mean over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from geocopgen.errors import ConfigError
from geocopgen.models.schedule import NUM_TRAIN_TIMESTEPS, model_timestep
from geocopgen.models.uvit import MultimodalUViT


@dataclass(frozen=True)
class RoleProbabilities:
    """Per-modality role probabilities; they are normalised, so only ratios matter."""

    generate: float = 0.5
    condition: float = 0.3
    absent: float = 0.2

    def __post_init__(self) -> None:
        values = (self.generate, self.condition, self.absent)
        if min(values) < 0 or self.generate <= 0 or sum(values) <= 0:
            raise ConfigError(f"role probabilities must be >= 0 with generate > 0, got {values}")

    @property
    def p_absent(self) -> float:
        return self.absent / (self.generate + self.condition + self.absent)

    @property
    def p_generate_if_present(self) -> float:
        return self.generate / (self.generate + self.condition)


@dataclass
class Roles:
    """One batch's roles: the present modalities and, per sample, which are generated."""

    present: list[str]
    generated: dict[str, torch.Tensor]  # name → (B,) bool

    def conditioned(self, name: str) -> torch.Tensor:
        return ~self.generated[name]


def draw_roles(
    modalities: Sequence[str],
    batch_size: int,
    probabilities: RoleProbabilities = RoleProbabilities(),
    generator: torch.Generator | None = None,
) -> Roles:
    """Draw the absent set for the batch and generate/condition per sample (module docstring)."""
    names = list(modalities)
    absent = torch.rand(len(names), generator=generator) < probabilities.p_absent
    if absent.all():
        absent[torch.randint(len(names), (1,), generator=generator)] = False
    present = [n for n, a in zip(names, absent.tolist(), strict=True) if not a]
    gen = torch.rand(len(present), batch_size, generator=generator)
    gen = gen < probabilities.p_generate_if_present
    none = ~gen.any(dim=0)
    if none.any():
        pick = torch.randint(len(present), (batch_size,), generator=generator)
        gen[pick[none], none.nonzero().squeeze(1)] = True
    return Roles(present=present, generated={n: gen[i] for i, n in enumerate(present)})


@dataclass
class LossOutput:
    """The scalar loss and, per modality, its mean MSE over the samples that generated it."""

    loss: torch.Tensor
    per_modality: dict[str, torch.Tensor]


def diffusion_loss(
    backbone: MultimodalUViT,
    scheduler,
    latents: Mapping[str, torch.Tensor],
    roles: Roles,
    generator: torch.Generator | None = None,
    *,
    timesteps: Mapping[str, torch.Tensor] | None = None,
    noise: Mapping[str, torch.Tensor] | None = None,
) -> LossOutput:
    """Diffusion loss of ``backbone`` on clean scaled ``latents`` under ``roles``.

    ``scheduler`` provides ``add_noise`` and ``get_velocity`` (a diffusers ``DDPMScheduler`` on
    the SD schedule, see :func:`~geocopgen.models.schedule.training_scheduler`); its
    ``prediction_type`` says whether the target is the noise, the clean latent or the velocity.
    ``latents`` may hold modalities that are absent this batch; they are ignored.
    ``timesteps`` (name → ``(B,)`` diffusers timesteps) and ``noise`` (name → tensor like the
    latent) replace the draws from ``generator`` when given: a training loop that seeds every
    sample separately (exact resume, DDP) draws them itself.
    """
    prediction = scheduler.config.prediction_type
    inputs, times, targets = {}, {}, {}
    for name in roles.present:
        z0 = latents[name]
        b = z0.shape[0]
        if timesteps is not None:
            t = timesteps[name].to(z0.device)
        else:
            t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), generator=generator).to(z0.device)
        if noise is not None:
            eps = noise[name].to(device=z0.device, dtype=z0.dtype)
        else:
            eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype).to(z0.device)
        gen = roles.generated[name].to(z0.device)
        noisy = scheduler.add_noise(z0, eps, t)
        inputs[name] = torch.where(gen[:, None, None, None], noisy, z0)
        times[name] = torch.where(gen, model_timestep(t).to(z0.device), 0.0)
        targets[name] = (scheduler.get_velocity(z0, eps, t) if prediction == "v_prediction"
                         else z0 if prediction == "sample" else eps)  # fmt: skip
    pred = backbone(inputs, times).sample
    total = 0.0
    per_modality = {}
    for name in roles.present:
        gen = roles.generated[name].to(pred[name].device)
        mse = (pred[name].float() - targets[name].float()).pow(2).mean(dim=(1, 2, 3))
        total = total + torch.where(gen, mse, 0.0)
        if gen.any():
            per_modality[name] = mse[gen].mean().detach()
    return LossOutput(loss=total.mean(), per_modality=per_modality)
