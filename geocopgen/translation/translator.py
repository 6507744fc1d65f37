"""Seamless translation of a raster of any size: encode → MultiDiffusion on the canvas → decode.

1. **Encode.** Every condition is read a run of up to 8 chips of one chip row at a time on the
   latent chip grid (one windowed read per run, cut into chips, reflection-padded past the
   raster edge), normalised (NaN → the band centre), encoded to latents (posterior mean) and
   blended into that condition's latent canvas with the chips' raised-cosine weights.
2. **Denoise.** The target's canvas starts from position-seeded noise
   (:func:`~geocopgen.translation.canvas.positional_noise`). At every scheduler step each chip's
   noise (or velocity) is predicted (``CopGenPipeline.predict_model_output``, conditions at timestep
   0, chips batched), the predictions are blended into one canvas-sized prediction with
   raised-cosine weights, and the scheduler takes **one** step on the whole canvas. Neighbouring
   chips therefore agree at every step, so there is nothing to hide at chip borders afterwards.
   (Blending the predictions equals blending the chips' own steps, MultiDiffusion's rule, because
   a DPM-Solver or DDIM step is linear in the model output.) With ``seamless=False`` every chip is
   denoised on its own and the chips' final latents are blended once: the naive method, kept to
   measure what seamlessness buys and costs.
3. **Decode.** The raster engine's pixel chips are decoded one by one from the canvas and handed,
   in physical units, to a sink (the streaming :class:`~geocopgen.raster.mosaic.MosaicWriter`),
   which blends them again in pixel space and writes finished tiles. Output pixels are nodata
   (NaN) wherever any condition is nodata, as the encoder saw it (a
   :class:`~geocopgen.translation.validity.PixelMask`, so the conditions are not read twice).

Memory: the canvases (target, prediction sum, the scheduler's history of two predictions, one
per condition), a batch of chips, the run of chips being encoded and the next one being read
(13 bands x 256 x 1600 px float32 = 21 MB), and each condition's nodata mask; for a full
10 980 px Sentinel-2 tile the canvas is 1373 x 1373 x 8 float32 = 60 MB per sample and the
mask 15 MB.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from geocopgen.domain import DomainGuard
from geocopgen.errors import NoValidDataError
from geocopgen.io.readers import OpenedInput
from geocopgen.modalities import get_modality
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.options import Reduce, TranslateOptions
from geocopgen.precision import PrecisionPolicy, resolve_precision
from geocopgen.prefetch import prefetch, to_device
from geocopgen.raster.chips import Chip
from geocopgen.raster.grid import GeoBox
from geocopgen.translation.canvas import (
    CanvasLayout,
    add_weighted,
    positional_noise,
    weight_sum,
)
from geocopgen.translation.cost import DenoiseClock, announce_plan
from geocopgen.translation.plan import (
    TranslationPlan,
    check_codec,
    check_conditions,
    layout_for,
    output_bands,
    plan_translation,
)
from geocopgen.translation.streaming import (
    ChipSink,
    batched,
    decode_chips,
    encode_chips,
    reduce_samples,
)
from geocopgen.translation.validity import PixelMask


@dataclass
class TranslateStats:
    """What a run did: chip counts and seconds per phase."""

    latent_chips: int = 0
    denoised_chips: int = 0
    pixel_chips: int = 0
    decoded_chips: int = 0
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    domain: DomainGuard | None = None  # what was clipped to the target's physical range


def _device_of(pipeline: CopGenPipeline) -> torch.device:
    return next(pipeline.backbone.parameters()).device


# --- 1. encode --------------------------------------------------------------------------------
def encode_canvas(
    pipeline: CopGenPipeline,
    array: xr.DataArray,
    layout: CanvasLayout,
    *,
    batch_size: int = 8,
    progress: bool = True,
    precision: PrecisionPolicy | None = None,
) -> tuple[torch.Tensor, np.ndarray, PixelMask]:
    """A ModalityArray's latent canvas ``(1, C, H, W)``, per latent chip whether it holds any
    valid pixel, and which raster pixels hold data (at least one finite band).

    Chips with no valid pixel are not encoded (their cells stay 0 unless a neighbour covers them).
    ``precision`` says what the codec runs in (``None``: float32).
    """
    name = array.attrs["modality"]
    codec = check_codec(pipeline, name)
    modality = get_modality(name)
    device = _device_of(pipeline)
    precision = precision or resolve_precision("fp32", device)

    def encode(x: np.ndarray, finite: np.ndarray) -> torch.Tensor:
        modality.model_input(x, axis=1, finite=finite)  # in place: no temporaries
        with precision.for_codecs():
            return codec.to_latents(to_device(torch.from_numpy(x), device).float()).float()

    return encode_chips(
        encode,
        array,
        layout,
        channels=codec.config.latent_channels,
        device=_device_of(pipeline),
        batch_size=batch_size,
        progress=progress,
        desc=f"encoding {name}",
    )


# --- 2. denoise -------------------------------------------------------------------------------
def denoise_canvas(
    pipeline: CopGenPipeline,
    target: str,
    layout: CanvasLayout,
    conditions: Mapping[str, torch.Tensor],
    active: np.ndarray,
    options: TranslateOptions,
    precision: PrecisionPolicy | None = None,
) -> torch.Tensor:
    """The target's final latent canvas ``(samples, C, H, W)``; ``precision`` says what the
    backbone runs in (``None``: float32)."""
    device = _device_of(pipeline)
    precision = precision or resolve_precision("fp32", device)
    steps = options.steps or pipeline.num_inference_steps
    scheduler = copy.deepcopy(pipeline.scheduler)
    scheduler.set_timesteps(steps, device=device)
    channels = pipeline.backbone.channels_of(target)
    noise = positional_noise(layout, channels, options.samples, options.seed).to(device)
    noise.mul_(scheduler.init_noise_sigma)  # in place: canvases are what memory is spent on
    chips = [c for c in layout.latent_chips if active[c.row, c.col]]
    per_call = max(1, options.batch_size // options.samples)
    batches = list(batched(chips, per_call))
    weight = weight_sum(layout.latent_chips, chips, layout.shape, device)
    step_kwargs = _step_kwargs(scheduler, options.seed)
    bar = tqdm(
        total=steps * len(batches),
        desc="denoising" if options.seamless else "denoising (chips independently)",
        unit="batch",
        disable=not options.progress,
    )
    denoiser = _Denoiser(pipeline, target, layout, conditions, options.samples, precision)
    clock = DenoiseClock(
        chips=len(chips), calls=steps, batches=len(batches), batch_size=per_call * options.samples,
        precision=precision, progress=options.progress,
    )  # fmt: skip
    with bar, torch.inference_mode():
        if options.seamless:
            latents = noise
            del noise  # the name would keep the first canvas alive through every step
            for t in scheduler.timesteps:
                x = scheduler.scale_model_input(latents, t)
                pred = torch.zeros_like(latents)
                for batch in batches:
                    with clock.batch():
                        values = denoiser.predict(x, batch, t)
                    denoiser.blend_into(pred, batch, values)
                    bar.update(1)
                pred.div_(weight)
                latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
            return latents
        total = torch.zeros_like(noise)
        for batch in batches:
            chip_scheduler = copy.deepcopy(scheduler)
            x = denoiser.stack(noise, batch)
            for t in chip_scheduler.timesteps:
                pred = denoiser.output(chip_scheduler.scale_model_input(x, t), batch, t)
                x = chip_scheduler.step(pred, t, x, **step_kwargs).prev_sample
                bar.update(1)
            denoiser.blend_into(total, batch, denoiser.unstack(x, batch))
        return total.div_(weight)


def _step_kwargs(scheduler: Any, seed: int) -> dict[str, Any]:
    """Stochastic (SDE) schedulers draw their step noise from a generator seeded by ``seed``."""
    if "generator" in inspect.signature(type(scheduler).step).parameters:
        return {"generator": torch.Generator().manual_seed(seed)}
    return {}


class _Denoiser:
    """Cuts chip batches out of canvases, predicts their model output, and blends it back."""

    def __init__(
        self,
        pipeline: CopGenPipeline,
        target: str,
        layout: CanvasLayout,
        conditions: Mapping[str, torch.Tensor],
        samples: int,
        precision: PrecisionPolicy | None = None,
    ) -> None:
        self.pipeline, self.target, self.layout = pipeline, target, layout
        self.conditions, self.samples, self.precision = conditions, samples, precision

    def stack(self, canvas: torch.Tensor, batch: Sequence[Chip]) -> torch.Tensor:
        """``(chips * samples, C, h, w)``, chip-major, from a ``(samples, C, H, W)`` canvas."""
        return torch.cat([canvas[:, :, rows, cols] for rows, cols in (c.slices for c in batch)])

    def unstack(self, x: torch.Tensor, batch: Sequence[Chip]) -> torch.Tensor:
        return x.reshape(len(batch), self.samples, *x.shape[1:])

    def output(self, x: torch.Tensor, batch: Sequence[Chip], t: torch.Tensor) -> torch.Tensor:
        """Model output (noise or velocity) for stacked chips ``x`` at timestep ``t``."""
        cond = {
            name: self.stack(z, batch).repeat_interleave(self.samples, dim=0)
            for name, z in self.conditions.items()
        }
        out = self.pipeline.predict_model_output({self.target: x}, cond, t,
                                                 precision=self.precision)  # fmt: skip
        return out[self.target]

    def predict(self, canvas: torch.Tensor, batch: Sequence[Chip], t: torch.Tensor) -> torch.Tensor:
        """``(chips, samples, C, h, w)`` model outputs for a batch of canvas chips."""
        return self.unstack(self.output(self.stack(canvas, batch), batch, t), batch)

    def blend_into(self, canvas: torch.Tensor, batch: Sequence[Chip], values: torch.Tensor) -> None:
        """Add each chip's values, times its blend weights, onto the canvas."""
        add_weighted(canvas, self.layout.latent_chips, batch, values)


# --- 3. decode --------------------------------------------------------------------------------
def decode_canvas(
    pipeline: CopGenPipeline,
    name: str,
    latents: torch.Tensor,
    layout: CanvasLayout,
    *,
    valid: PixelMask | None = None,
    reduce: Reduce = "mean_std",
    progress: bool = True,
    guard: DomainGuard | None = None,
    precision: PrecisionPolicy | None = None,
) -> Iterator[tuple[Chip, np.ndarray | None]]:
    """Decoded pixel chips in physical units, window-shaped, NaN where ``valid`` (the pixels
    where every condition has data, from :func:`encode_canvas`) is False; ``None`` for a chip
    with no valid pixel. ``(bands, h, w)`` per chip, bands as :func:`output_bands` names them.
    ``precision`` says what the codec runs in (``None``: float32)."""
    codec = check_codec(pipeline, name)
    modality = get_modality(name)
    precision = precision or resolve_precision("fp32", _device_of(pipeline))

    def decode(z: torch.Tensor) -> torch.Tensor:
        with precision.for_codecs():
            image = codec.from_latents(z)
        return modality.denormalize(image.float(), axis=1)

    return decode_chips(
        decode,
        latents,
        layout,
        valid=valid,
        reduce=lambda x: reduce_samples(x, reduce),
        progress=progress,
        desc=f"decoding {name}",
        guard=guard,
    )


# --- the whole operation ----------------------------------------------------------------------
class CanvasTranslator:
    """Generate ``target`` over a raster grid, conditioned on ModalityArrays on that grid.

    ``translator.run(grid, conditions, sink)`` streams decoded chips into ``sink`` (a
    :class:`~geocopgen.raster.mosaic.MosaicWriter` or anything with ``add``/``skip``). With no
    conditions it generates unconditionally.
    """

    def __init__(
        self,
        pipeline: CopGenPipeline,
        target: str,
        options: TranslateOptions | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.target = pipeline.backbone.canonical(target)
        check_codec(pipeline, self.target)
        self.options = options or TranslateOptions()

    @property
    def bands(self) -> tuple[list[str], list[str]]:
        """Output band names and descriptions."""
        return output_bands(self.target, self.options.samples, self.options.reduce)

    def layout(self, grid: GeoBox, conditions: Iterable[str] = ()) -> CanvasLayout:
        return layout_for(self.pipeline, grid, [self.target, *conditions], self.options.overlap)

    def check_conditions(self, names: Iterable[str]) -> list[str]:
        """Canonical condition names; the target cannot be one of them."""
        return check_conditions(self.pipeline, self.target, list(names))

    def plan(
        self,
        grid: GeoBox,
        conditions: Mapping[str, xr.DataArray | OpenedInput],
        *,
        out_grid: GeoBox | None = None,
        model: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> TranslationPlan:
        """The translation of ``conditions`` (on ``grid``) planned once (see
        :func:`~geocopgen.translation.plan.plan_translation`)."""
        return plan_translation(
            self.pipeline,
            self.target,
            grid,
            conditions,
            self.options,
            out_grid=out_grid,
            model=model,
            tags=tags,
        )

    def run(self, plan: TranslationPlan, sink: ChipSink) -> TranslateStats:
        """Encode, denoise and decode ``plan`` into ``sink``; raise :class:`NoValidDataError` if
        the conditions hold no valid pixel."""
        opts, layout, conditions = plan.options, plan.layout, plan.conditions
        stats = TranslateStats(
            latent_chips=len(layout.latent_chips),
            pixel_chips=len(layout.pixel_chips),
            steps=opts.steps or self.pipeline.num_inference_steps,
        )
        announce_plan(
            chips=len(layout.latent_chips), calls=stats.steps, batch_size=int(opts.batch_size),
            precision=plan.precision, progress=opts.progress,
        )  # fmt: skip
        clock = time.perf_counter()
        latents: dict[str, torch.Tensor] = {}
        active = np.ones(layout.latent_chips.shape, dtype=bool)
        valid: PixelMask | None = None
        for name, array in conditions.items():
            latents[name], has_data, observed = encode_canvas(
                self.pipeline, array, layout, batch_size=opts.batch_size, progress=opts.progress,
                precision=plan.precision,
            )  # fmt: skip
            active &= has_data
            valid = observed if valid is None else valid & observed
        if not active.any():
            sources = ", ".join(str(a.attrs.get("source", n)) for n, a in conditions.items())
            raise NoValidDataError(
                f"{sources}: no part of the raster has valid data in every condition, so there "
                "is nothing to translate. Check the inputs' nodata values and that they overlap."
            )
        stats.denoised_chips = int(active.sum())
        stats.seconds["encode"] = time.perf_counter() - clock

        clock = time.perf_counter()
        final = denoise_canvas(
            self.pipeline, self.target, layout, latents, active, opts, plan.precision
        )
        stats.seconds["denoise"] = time.perf_counter() - clock
        del latents

        clock = time.perf_counter()
        stats.domain = DomainGuard(self.target, layout.pixel_chips)
        chips = decode_canvas(
            self.pipeline,
            self.target,
            final,
            layout,
            valid=valid,
            reduce=opts.reduce,
            progress=opts.progress,
            guard=stats.domain,
            precision=plan.precision,
        )
        for chip, values in prefetch(chips, depth=2):  # the next decode while this one writes
            if values is None:
                sink.skip(chip)
            else:
                sink.add(chip, values)
                stats.decoded_chips += 1
        stats.seconds["decode"] = time.perf_counter() - clock
        return stats
