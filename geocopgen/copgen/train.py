"""Training a COP-GEN-layout model on a CPU: codecs in closed form, then the backbone on random
roles, resumable and bounded in wall time.

**Codecs.** One :class:`~geocopgen.copgen.codec.PatchCodec` per image slot, fitted on every valid
patch of every place that has the slot (:func:`fit_codecs`).

**Backbone.** Each step draws one place (weighted by how many modalities it has: translation is
learnt where modalities meet), a batch of 1920 m chips from it at random 60 m origins with random
flips and quarter turns, and one role per modality for the batch: *condition* (clean, time 0),
*generated* (noised at a time drawn per item, shared by the modality's groups) or *left out*
(the ``ignored="omit"`` treatment, also used to drop conditions at random). Lat/lon and date
are conditions when known, each left out with a small probability, so the model works without
them. The loss is the mean squared error of the prediction, averaged per generated slot; the
prediction is the velocity of the residual over the first guess (``"v_prediction"``, see
:func:`~geocopgen.copgen.sampler.as_noise` for why), the residual itself (``"sample"``), or
COP-GEN's noise (``"epsilon"``).

Resuming: a checkpoint (weights, EMA, optimiser, step, training seconds) is written atomically
every ``checkpoint_every`` steps and at the end; every random draw of step ``k`` comes from a
generator seeded with ``(seed, k)``, so a resumed run continues exactly as an unbroken one.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from geocopgen.copgen import normalisation as norm
from geocopgen.copgen.codec import PatchCodec
from geocopgen.copgen.first_guess import MEAN, FirstGuess, GuessStatistics
from geocopgen.copgen.layout import (
    COPGEN_SLOTS,
    DATE_SLOT,
    LATLON_SLOT,
    MODALITY_SLOTS,
    CopgenSlot,
)
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.places import IMAGE_SLOTS, SlotPlace
from geocopgen.copgen.published import layout_config
from geocopgen.copgen.sampler import copgen_betas
from geocopgen.models.schedule import NUM_TRAIN_TIMESTEPS, check_prediction_type
from geocopgen.models.uvit import MultimodalUViT

#: How each image slot's codec reconstructs: Sentinel-2 through the square root (never negative).
CODEC_TRANSFORMS = {key: "sqrt" if key.startswith("S2") else "identity" for key in IMAGE_SLOTS}
#: Slots whose codecs keep each channel's patch mean: heights and backscatter levels vary far
#: beyond what any fitting set covers (measured: a DEM codec fitted on lowland decodes a plateau
#: hundreds of metres off without it; for the 4-6 band Sentinel-2 groups it costs 0.001-0.0015
#: reflectance MAE, and their levels are bounded, so they do without).
KEEP_MEANS_SLOTS = ("DEM_DEM", "S1RTC_vh_vv")

Log = Callable[[str], None]


@dataclass(frozen=True)
class BackboneSettings:
    """The backbone's size and its training; every field is recorded with the checkpoint."""

    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 4
    patch_size: int = 4
    batch_size: int = 12
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    ema_decay: float = 0.998
    minutes: float = 30.0
    max_steps: int | None = None
    p_drop_condition: float = 0.15
    p_drop_scalar: float = 0.1
    prediction: str = "v_prediction"
    #: Train on each place's residual over a first guess fitted without that place (the
    #: errors a guess makes where it is used), not over the guess that saw it.
    cross_fitted_guess: bool = True
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        check_prediction_type(self.prediction)


# --- layout -----------------------------------------------------------------------------------
def bundled_slots(patch_size: int) -> tuple[CopgenSlot, ...]:
    """The COP-GEN slots with whitened codecs (scale factor 1) and ``patch_size`` tokens (a
    smaller latent side keeps it: the 60 m slots' 4 x 4 latents are one token)."""
    return tuple(
        replace(s, patch_size=min(patch_size, s.latent_shape[1]), scale_factor=1.0)
        if s.kind == "image"
        else s
        for s in COPGEN_SLOTS
    )


def build_backbone(settings: BackboneSettings) -> MultimodalUViT:
    """An untrained backbone in the bundled layout."""
    config = layout_config(
        bundled_slots(settings.patch_size),
        embed_dim=settings.embed_dim,
        depth=settings.depth,
        num_heads=settings.num_heads,
    )
    return MultimodalUViT(**config)


# --- codecs -----------------------------------------------------------------------------------
def fit_codecs(
    places: Sequence[SlotPlace],
    keys: Sequence[str] | None = None,
    *,
    keep_means: bool = True,
    decoder_reach: int = 0,
    log: Log = print,
) -> dict[str, PatchCodec]:
    """One fitted codec per image slot that some place has (or ``keys``); the
    :data:`KEEP_MEANS_SLOTS` keep each channel's patch mean, and ``decoder_reach`` > 0 gives
    every decoder overlapping footprints (see :class:`PatchCodec`)."""
    keys = keys or [k for k in IMAGE_SLOTS if any(k in p.pixels for p in places)]
    codecs = {}
    for key in keys:
        s = IMAGE_SLOTS[key]
        codec = PatchCodec(
            in_channels=s.image_channels,
            latent_channels=s.latent_shape[0],
            downsample=s.chip_px // s.latent_shape[1],
            transform=CODEC_TRANSFORMS[key],
            keep_means=keep_means and key in KEEP_MEANS_SLOTS,
            decoder_reach=decoder_reach,
        )
        chips = [
            (_whole_patches(p.pixels[key], codec.config.downsample)[None],
             _whole_patches(p.valid[key], codec.config.downsample)[None])
            for p in places if key in p.pixels
        ]  # fmt: skip
        stats = codec.fit(chips)
        codecs[key] = codec.eval()
        log(f"[codecs] {key}: {stats.n} patches from {len(chips)} place(s)")
    return codecs


def _whole_patches(x: torch.Tensor, f: int) -> torch.Tensor:
    """``x`` cut to whole ``f`` x ``f`` patches (the codec fits on whole patches only)."""
    h, w = x.shape[-2] // f * f, x.shape[-1] // f * f
    return x[..., :h, :w]


# --- one training batch -----------------------------------------------------------------------
@dataclass
class Batch:
    """Backbone inputs, network times, and what the output should be for the generated slots
    (the noise or the clean latent, after ``BackboneSettings.prediction``)."""

    inputs: dict[str, torch.Tensor]
    times: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]


class Noise(Protocol):
    """Where an objective's per-item randomness comes from: the times and the noise of the
    generated slots (one generator for the batch in the recipe; one per sample in the store
    path, so that a DDP run draws what a single process draws)."""

    def times(self, n: int) -> torch.Tensor: ...

    def eps(self, shape: torch.Size) -> torch.Tensor: ...


class BatchNoise:
    """Per-item draws from one generator shared by the batch (the recipe's)."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def times(self, n: int) -> torch.Tensor:
        return torch.randint(1, NUM_TRAIN_TIMESTEPS + 1, (n,), generator=self.gen)

    def eps(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen)


class Objective:
    """The COP-GEN training objective on a batch of clean latents: one role per modality
    (generated, condition, left out), per-item times and noise, and the target after
    ``settings.prediction``; with a ``first_guess``, a clean-latent target is the latent minus
    the guess from the batch's conditions: the place's own entry of ``held_out_guesses`` (a
    guess fitted without it) when there is one. Shared by the in-memory recipe
    (:class:`BatchDrawer`) and training from a latent store (:mod:`geocopgen.training.copgen`)."""

    def __init__(
        self,
        s: BackboneSettings,
        first_guess: FirstGuess | None = None,
        held_out_guesses: Mapping[str, FirstGuess] | None = None,
    ) -> None:
        self.settings = s
        self.first_guess = first_guess
        self.held_out_guesses = dict(held_out_guesses or {})
        self.alphas_bar = torch.cumprod(1 - copgen_betas(), dim=0).float()

    def roles(
        self,
        latents: dict[str, torch.Tensor],
        centres: Sequence[tuple[float, float]],
        when: date | Sequence[date] | None,
        place: str,
        rng: np.random.Generator,
        noise: Noise,
    ) -> Batch:
        """Roles from ``rng`` (one draw per batch), times and noise from ``noise``; ``when``
        is the batch's date, or one per item."""
        n = len(centres)
        modalities = [m for m, keys in MODALITY_SLOTS.items() if all(k in latents for k in keys)]
        order = list(rng.permutation(modalities))
        n_generated = int(rng.integers(1, len(order) + 1))
        generated, conditions = order[:n_generated], order[n_generated:]
        conditions = [m for m in conditions if rng.random() >= self.settings.p_drop_condition]
        inputs, times, targets = {}, {}, {}
        zero = torch.zeros(n)
        for m in conditions:
            for k in MODALITY_SLOTS[m]:
                inputs[k], times[k] = latents[k], zero
        known = dict(inputs)
        for m in generated:
            t = noise.times(n)
            ab = self.alphas_bar[t - 1].reshape(n, 1, 1, 1)
            for k in MODALITY_SLOTS[m]:
                eps = noise.eps(latents[k].shape)
                inputs[k] = ab.sqrt() * latents[k] + (1 - ab).sqrt() * eps
                times[k] = t.float()
                targets[k] = self.target(latents[k], eps, ab, known, k, place)
        if rng.random() >= self.settings.p_drop_scalar:
            lon, lat = zip(*centres, strict=True)
            inputs[LATLON_SLOT] = norm.encode_latlon(list(lat), list(lon)).reshape(n, 1, 1, 3)
            times[LATLON_SLOT] = zero
        if when is not None and rng.random() >= self.settings.p_drop_scalar:
            inputs[DATE_SLOT] = _date_tokens(when, n)
            times[DATE_SLOT] = zero
        return Batch(inputs, times, targets)

    def target(
        self,
        z: torch.Tensor,
        eps: torch.Tensor,
        alpha_bar: torch.Tensor,
        known: Mapping[str, torch.Tensor],
        key: str,
        place: str,
    ) -> torch.Tensor:
        """What the backbone should output (see :func:`~geocopgen.copgen.sampler.as_noise`):
        the noise, or the clean latent's residual over the guess, or that residual's velocity."""
        prediction = self.settings.prediction
        if prediction == "epsilon":
            return eps
        guess = self.held_out_guesses.get(place, self.first_guess)
        residual = z if guess is None else z - guess.guess(known, key, z)
        if prediction == "sample":
            return residual
        return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * residual


class BatchDrawer(Objective):
    """Random batches from the places, encoded by the codecs (deterministic per step), under
    the :class:`Objective`."""

    def __init__(
        self,
        places: Sequence[SlotPlace],
        codecs: Mapping[str, PatchCodec],
        s: BackboneSettings,
        first_guess: FirstGuess | None = None,
        held_out_guesses: Mapping[str, FirstGuess] | None = None,
    ) -> None:
        super().__init__(s, first_guess, held_out_guesses)
        usable = [(p, origins) for p in places if (origins := p.chip_origins())]
        self.places = [p for p, _ in usable]
        self.origins = [origins for _, origins in usable]
        weights = np.array([len(p.modalities) ** 2 for p in self.places], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.codecs = codecs

    def draw(self, step: int) -> Batch:
        rng = np.random.default_rng([self.settings.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        i = int(rng.choice(len(self.places), p=self.weights))
        place, origins = self.places[i], self.origins[i]
        chips, centres = [], []
        while len(chips) < self.settings.batch_size:
            r, c = origins[int(rng.integers(len(origins)))]
            chip = place.chip(r, c)
            if chip:
                chips.append(augment(chip, int(rng.integers(8))))
                centres.append(place.chip_centre_lonlat(r, c))
        present = set.intersection(*(set(c) for c in chips))
        latents = {
            k: self.codecs[k].encode(torch.stack([c[k] for c in chips])).latent_dist.mean
            for k in present
        }
        return self.roles(latents, centres, place.when, place.name, rng, BatchNoise(gen))


def _date_tokens(when: date | Sequence[date], n: int) -> torch.Tensor:
    """The date slot's input ``(n, 1, 1, 3)``: one date for the batch, or one per item."""
    if isinstance(when, date):
        return norm.encode_date(when).reshape(1, 1, 1, 3).expand(n, -1, -1, -1)
    return torch.cat([norm.encode_date(d).reshape(1, 1, 1, 3) for d in when])


def augment(chip: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """One of the 8 flips and quarter turns, the same for every slot."""
    out = {}
    for key, x in chip.items():
        y = torch.rot90(x, k % 4, dims=(-2, -1))
        out[key] = torch.flip(y, dims=(-1,)) if k >= 4 else y
    return out


def loss_of(backbone: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean squared error of the prediction, averaged per generated slot, then over slots."""
    out = backbone(batch.inputs, batch.times).sample
    losses = [torch.mean((out[k] - target) ** 2) for k, target in batch.targets.items()]
    return torch.stack(losses).mean()


# --- the loop ---------------------------------------------------------------------------------
CHECKPOINT = "checkpoint.pt"


def train_backbone(
    places: Sequence[SlotPlace],
    codecs: Mapping[str, PatchCodec],
    settings: BackboneSettings,
    work: str | os.PathLike,
    *,
    first_guess: FirstGuess | None = None,
    held_out_guesses: Mapping[str, FirstGuess] | None = None,
    log: Log = print,
) -> MultimodalUViT:
    """Train (or resume) the backbone in ``work``; returns the EMA weights. With
    ``settings.cross_fitted_guess``, each place's targets are over ``held_out_guesses[place]``
    (see :class:`BatchDrawer`)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = build_backbone(settings).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    step, seconds = _resume(work / CHECKPOINT, settings, model, ema, opt, log)
    held = held_out_guesses if settings.cross_fitted_guess else None
    drawer = BatchDrawer(places, codecs, settings, first_guess, held)
    budget = settings.minutes * 60.0
    start, last_log, running = time.perf_counter() - seconds, 0.0, []
    while seconds < budget and (settings.max_steps is None or step < settings.max_steps):
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / settings.warmup_steps)
        loss = loss_of(model, drawer.draw(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _ema_update(ema, model, settings.ema_decay if step > settings.warmup_steps else 0.0)
        step += 1
        seconds = time.perf_counter() - start
        running.append(loss.item())
        if step % settings.checkpoint_every == 0:
            _save(work / CHECKPOINT, settings, model, ema, opt, step, seconds)
        if seconds - last_log >= 60 or step == settings.max_steps:
            log(f"[backbone] step {step}, {seconds / 60:.1f} min, loss {np.mean(running):.4f}")
            last_log, running = seconds, []
    _save(work / CHECKPOINT, settings, model, ema, opt, step, seconds)
    log(f"[backbone] done: {step} steps in {seconds / 60:.1f} min of training")
    return ema


#: Settings that bound a run without changing its steps: a run may resume with others.
BUDGET_FIELDS = ("minutes", "max_steps", "checkpoint_every")


def _trajectory(settings: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in settings.items() if k not in BUDGET_FIELDS}


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def _save(path: Path, settings: BackboneSettings, model: nn.Module, ema: nn.Module,
          opt: torch.optim.Optimizer, step: int, seconds: float) -> None:  # fmt: skip
    tmp = path.with_suffix(".tmp")
    torch.save({"settings": asdict(settings), "model": model.state_dict(),
                "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "seconds": seconds}, tmp)  # fmt: skip
    tmp.replace(path)


def _resume(path: Path, settings: BackboneSettings, model: nn.Module, ema: nn.Module,
            opt: torch.optim.Optimizer, log: Log) -> tuple[int, float]:  # fmt: skip
    if not path.exists():
        return 0, 0.0
    state = torch.load(path, weights_only=True)
    if _trajectory(state["settings"]) != _trajectory(asdict(settings)):
        raise RuntimeError(
            f"{path} was written with other settings; remove {path.parent} to start again"
        )
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    log(f"[backbone] resumed at step {state['step']} ({state['seconds'] / 60:.1f} min)")
    return int(state["step"]), float(state["seconds"])


def fit_first_guess(
    places: Sequence[SlotPlace],
    codecs: Mapping[str, PatchCodec],
    *,
    per_place: int = 256,
    seed: int = 0,
    log: Log = print,
) -> tuple[FirstGuess, dict[str, FirstGuess]]:
    """The latent first guess, each map's form chosen by leave-one-place-out, fitted on up to
    ``per_place`` chips of every place with two or more modalities (seeded origins); and per
    such place the same maps fitted without it (for :class:`BatchDrawer`)."""
    rng = np.random.default_rng(seed)

    def chips(place: SlotPlace) -> Iterator[dict[str, torch.Tensor]]:
        origins = place.chip_origins()
        if len(origins) > per_place:
            origins = [origins[i] for i in rng.choice(len(origins), per_place, replace=False)]
        for r, c in origins:
            chip = place.chip(r, c)
            with torch.no_grad():
                yield {k: codecs[k].encode(x[None]).latent_dist.mean for k, x in chip.items()}

    paired = [p for p in places if len(p.modalities) > 1]
    stats = GuessStatistics.collect({p.name: chips(p) for p in paired})
    scores = stats.held_out_scores()
    forms = stats.forms(scores)
    guess = stats.fit(forms)
    mapped = sum(1 for f in forms.values() if f != MEAN)
    log(f"[first guess] {mapped} of {len(forms)} condition → slot maps kept by leave-one-place-out")
    for (modality, key), form in forms.items():
        s = scores[(modality, key)]
        record = f" (held-out MSE {s[form]:.3f}; no map {s[MEAN]:.3f})" if s else ""
        log(f"[first guess]   {modality} → {key}: {form}{record}")
    return guess, {name: stats.fit(forms, without=name) for name in stats.by_place}


def assemble(
    backbone: MultimodalUViT,
    codecs: Mapping[str, PatchCodec],
    settings: BackboneSettings,
    provenance: Mapping[str, object] | None = None,
    first_guess: FirstGuess | None = None,
    strength: float = 1.0,
) -> CopgenModel:
    """The trained parts as one :class:`CopgenModel` (left-out slots omitted, S2 as reflectance,
    sampling from ``strength``)."""
    return CopgenModel(
        backbone,
        dict(codecs),
        slots=bundled_slots(settings.patch_size),
        ignored="omit",
        s2_dn="reflectance",
        prediction=settings.prediction,
        first_guess=first_guess,
        default_grid="input",
        strength=strength,
        provenance=provenance,
    )


def parameter_count(module: nn.Module) -> int:
    """Trainable and frozen parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "BackboneSettings",
    "BatchDrawer",
    "BatchNoise",
    "Noise",
    "Objective",
    "assemble",
    "build_backbone",
    "bundled_slots",
    "fit_codecs",
    "fit_first_guess",
    "loss_of",
    "train_backbone",
]
