"""Sampling on diffusers schedulers: any subset of modalities → any other, in latent space.

Two layers:

* :func:`predict_model_output` is the single denoising call: current latents of the generated
  modalities + clean condition latents + timestep(s) → prediction (noise or velocity) of the
  generated ones. It never steps a scheduler, so a MultiDiffusion tiler can call it chip by chip,
  blend the predictions on a scene canvas and then call ``scheduler.step`` once on the canvas.
* :func:`sample` runs the whole loop: seeded initial noise, one scheduler per generated modality
  (so each can start at its own noise level, img2img-style), conditions held at timestep 0 and
  returned bit-for-bit unchanged. :func:`sample_chain` loops generated → condition → generated.

Timesteps given to these functions are diffusers timesteps (0..999); the network's own scale is
handled by :func:`~geocopgen.models.schedule.model_timestep`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from geocopgen.errors import ConfigError, ModalityError
from geocopgen.models.schedule import model_timestep
from geocopgen.models.uvit import MultimodalUViT
from geocopgen.precision import PrecisionPolicy, resolve_precision

Ignored = Literal["omit", "noise"]
Generators = torch.Generator | Sequence[torch.Generator] | None
TimestepLike = int | float | torch.Tensor


@dataclass
class SamplingOutput(BaseOutput):
    """Latents of every generated and conditioning modality, ``(B * num_samples, C, H, W)``.

    Items are condition-major: item ``b * num_samples + s`` is sample ``s`` of condition ``b``.
    """

    latents: dict[str, torch.Tensor]


def predict_model_output(
    backbone: MultimodalUViT,
    latents: Mapping[str, torch.Tensor],
    conditions: Mapping[str, torch.Tensor] | None = None,
    timestep: TimestepLike | Mapping[str, TimestepLike] = 0,
    *,
    ignored: Ignored = "omit",
    generator: Generators = None,
    precision: PrecisionPolicy | None = None,
) -> dict[str, torch.Tensor]:
    """The network's prediction for the modalities in ``latents`` at diffusers ``timestep``.

    The prediction is what the scheduler consumes: the noise, or the velocity for a model trained
    with ``prediction_type="v_prediction"``.

    ``latents``: name → current noisy latents ``(B, C, H, W)`` of the generated modalities;
    ``conditions``: name → clean latents (fed at timestep 0); ``timestep``: one diffusers
    timestep (int or ``(B,)`` tensor) for every generated modality, or a mapping name → timestep.
    ``ignored="noise"`` reproduces the official quirk of feeding every other modality of the model
    fresh N(0, 1) noise at timestep 0 (``"omit"``, the default, leaves them out of the sequence).
    ``precision`` is what the network runs in (``None``: float32); the prediction is float32.
    """
    conditions = dict(conditions or {})
    generated = [backbone.canonical(n) for n in latents]
    held = [backbone.canonical(n) for n in conditions]
    both = set(generated) & set(held)
    if both:
        raise ModalityError(f"{sorted(both)} cannot be generated and a condition at once")
    if not generated:
        raise ModalityError("predict_model_output needs at least one modality to generate")
    inputs = {backbone.canonical(k): v for k, v in {**conditions, **latents}.items()}
    times: dict[str, torch.Tensor | float] = dict.fromkeys(held, 0.0)
    for name, key in zip(generated, latents, strict=True):
        t = timestep[key] if isinstance(timestep, Mapping) else timestep
        times[name] = model_timestep(t)
    if ignored == "noise":
        like = next(iter(inputs.values()))
        for name in backbone.modality_names:
            if name not in inputs:
                shape = (like.shape[0], backbone.channels_of(name), *like.shape[2:])
                inputs[name] = randn_tensor(
                    shape, generator=_gen(generator), dtype=like.dtype, device=like.device
                )
                times[name] = 0.0
    elif ignored != "omit":
        raise ConfigError(f"ignored must be 'omit' or 'noise', got {ignored!r}")
    with contextlib.nullcontext() if precision is None else precision.for_backbone():
        out = backbone(inputs, times).sample
    return {key: out[name].float() for name, key in zip(generated, latents, strict=True)}


def start_index(num_inference_steps: int, strength: float) -> int:
    """First scheduler step of a modality noised to ``strength`` (diffusers img2img rule)."""
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"strength must be within [0, 1], got {strength}")
    return num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)


@torch.no_grad()
def sample(
    backbone: MultimodalUViT,
    scheduler: SchedulerMixin,
    generate: Sequence[str],
    conditions: Mapping[str, torch.Tensor] | None = None,
    *,
    num_inference_steps: int = 20,
    num_samples: int = 1,
    generator: Generators = None,
    init_latents: Mapping[str, torch.Tensor] | None = None,
    strength: float | Mapping[str, float] = 1.0,
    batch_size: int | None = None,
    latent_shape: tuple[int, int] | None = None,
    ignored: Ignored = "omit",
    progress: bool = True,
    precision: str | PrecisionPolicy = "fp32",
) -> SamplingOutput:
    """Generate ``generate`` from ``conditions`` (scaled latents, name → ``(B, C, H, W)``).

    * No conditions: joint unconditional generation of ``batch_size`` items on ``latent_shape``
      (default: the backbone's configured latent size).
    * ``num_samples``: samples per condition; ``generator``: one ``torch.Generator`` or one per
      output item (``B * num_samples``), for per-item reproducibility.
    * ``init_latents`` + ``strength`` (per modality): partially noise a given latent to
      ``strength`` (1 = pure noise) and denoise it from there, to re-imagine it. Before its start
      step such a modality is fed at its starting noise level and timestep, and left unchanged.
    * ``precision``: what the backbone runs in (:mod:`geocopgen.precision`; default ``"fp32"``,
      the reference); the schedulers' arithmetic stays float32.
    """
    conditions = {backbone.canonical(k): v for k, v in (conditions or {}).items()}
    init_latents = {backbone.canonical(k): v for k, v in (init_latents or {}).items()}
    names = _generated_names(backbone, generate, conditions)
    conditions = {k: v.repeat_interleave(num_samples, dim=0) for k, v in conditions.items()}
    init_latents = {k: v.repeat_interleave(num_samples, dim=0) for k, v in init_latents.items()}
    items, grid = _batch_and_grid(
        backbone, conditions, init_latents, batch_size, num_samples, latent_shape
    )
    gens = _check_generators(generator, items)
    param = next(backbone.parameters())
    if isinstance(precision, str):
        precision = resolve_precision(precision, param.device)
    strengths = _strengths(names, strength, init_latents)

    frozen = [
        n for n in names if start_index(num_inference_steps, strengths[n]) >= num_inference_steps
    ]
    conditions.update({n: init_latents[n] for n in frozen})  # too weak to change: held clean
    names = [n for n in names if n not in frozen]

    schedulers, begin, state, start_t = {}, {}, {}, {}
    for name in names:
        sch = copy.deepcopy(scheduler)
        sch.set_timesteps(num_inference_steps, device=param.device)
        begin[name] = start_index(num_inference_steps, strengths[name])
        if hasattr(sch, "set_begin_index"):
            sch.set_begin_index(begin[name])
        schedulers[name] = sch
        shape = (items, backbone.channels_of(name), *grid)
        noise = randn_tensor(shape, generator=gens, device=param.device, dtype=param.dtype)
        if name in init_latents:
            start_t[name] = sch.timesteps[begin[name]]
            state[name] = sch.add_noise(init_latents[name], noise, start_t[name].reshape(1))
        else:
            start_t[name] = sch.timesteps[0]
            state[name] = noise * sch.init_noise_sigma

    timesteps = schedulers[names[0]].timesteps if names else []
    # stochastic schedulers (SDE variants) draw their noise from the same per-item generators
    accepts = inspect.signature(type(scheduler).step).parameters
    step_kwargs = {"generator": gens} if "generator" in accepts else {}
    for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
        active = [n for n in names if begin[n] <= i]
        if not active:
            continue
        current = {
            n: schedulers[n].scale_model_input(state[n], t) if n in active else state[n]
            for n in names
        }
        times = {n: t if n in active else start_t[n] for n in names}
        out = predict_model_output(
            backbone, current, conditions, times, ignored=ignored, generator=gens,
            precision=precision,
        )  # fmt: skip
        for n in active:
            state[n] = schedulers[n].step(out[n], t, state[n], **step_kwargs).prev_sample
    return SamplingOutput(latents={**state, **conditions})


def sample_chain(
    backbone: MultimodalUViT,
    scheduler: SchedulerMixin,
    conditions: Mapping[str, torch.Tensor],
    stages: Sequence[tuple[Sequence[str], Sequence[str]]],
    *,
    num_samples: int = 1,
    generator: Generators = None,
    **kwargs,
) -> list[SamplingOutput]:
    """Looping: each stage ``(condition names, generate names)`` draws from the latents so far.

    Generated latents replace earlier ones of the same modality, so ``[(["s2l2a"], ["dem"]),
    (["dem"], ["s2l2a"])]`` goes real S2L2A → DEM → S2L2A. ``num_samples`` applies to the first
    stage; later stages run once per item. Returns every stage's output.
    """
    pool = {backbone.canonical(k): v for k, v in conditions.items()}
    outputs = []
    for k, (cond_names, gen_names) in enumerate(stages):
        cond_names = [backbone.canonical(n) for n in cond_names]
        missing = [n for n in cond_names if n not in pool]
        if missing:
            raise ModalityError(
                f"stage {k} conditions on {missing}, which neither the inputs nor an earlier "
                f"stage provide (available: {sorted(pool)})"
            )
        out = sample(
            backbone,
            scheduler,
            gen_names,
            {n: pool[n] for n in cond_names},
            num_samples=num_samples if k == 0 else 1,
            generator=generator,
            **kwargs,
        )
        if k == 0 and num_samples > 1:
            pool = {n: v.repeat_interleave(num_samples, dim=0) for n, v in pool.items()}
        pool.update(out.latents)
        outputs.append(out)
    return outputs


def generators_from_seeds(seeds: int | Sequence[int], device: str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per seed (a translator seeds one per chip position)."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]


# --- argument checks --------------------------------------------------------------------------
def _generated_names(
    backbone: MultimodalUViT, generate: Sequence[str], conditions: Mapping[str, torch.Tensor]
) -> list[str]:
    if isinstance(generate, str):
        generate = [generate]
    names = backbone.present(generate)
    if not names:
        raise ModalityError("nothing to generate: pass at least one modality in generate")
    both = set(names) & set(conditions)
    if both:
        raise ModalityError(
            f"{sorted(both)} is both a condition and a target; drop it from one of them (to "
            "re-imagine a given latent, pass it as init_latents with a strength)"
        )
    return names


def _batch_and_grid(
    backbone: MultimodalUViT,
    conditions: Mapping[str, torch.Tensor],
    init_latents: Mapping[str, torch.Tensor],
    batch_size: int | None,
    num_samples: int,
    latent_shape: tuple[int, int] | None,
) -> tuple[int, tuple[int, int]]:
    given = {**conditions, **init_latents}
    for name, z in given.items():
        want = backbone.channels_of(name)
        if z.ndim != 4 or z.shape[1] != want:
            raise ModalityError(
                f"latent of {name!r} has shape {tuple(z.shape)}; the model expects "
                f"(B, {want}, H, W)"
            )
    shapes = {k: (v.shape[0], *v.shape[2:]) for k, v in given.items()}
    if len(set(shapes.values())) > 1:
        raise ModalityError(f"given latents disagree in batch size or grid: {shapes}")
    if shapes:
        items, h, w = next(iter(shapes.values()))
        if latent_shape is not None and tuple(latent_shape) != (h, w):
            raise ModalityError(f"latent_shape {latent_shape} differs from the inputs' {(h, w)}")
        return items, (h, w)
    size = backbone.config.latent_size
    return (batch_size or 1) * num_samples, tuple(latent_shape or (size, size))


def _strengths(
    names: Sequence[str], strength: float | Mapping[str, float], init: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    per = {
        n: float(strength[n])
        if isinstance(strength, Mapping) and n in strength
        else (1.0 if isinstance(strength, Mapping) else float(strength))
        for n in names
    }
    lacking = [n for n, s in per.items() if s < 1.0 and n not in init]
    if lacking:
        raise ConfigError(f"strength < 1 for {lacking} needs their init_latents to re-imagine")
    return per


def _check_generators(generator: Generators, items: int) -> Generators:
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(generator) != items:
            raise ConfigError(
                f"got {len(generator)} generators for {items} output items; pass one generator "
                "or exactly one per item (batch x num_samples)"
            )
        return list(generator)
    return generator


def _gen(generator: Generators) -> Generators:
    return list(generator) if isinstance(generator, Sequence) else generator
