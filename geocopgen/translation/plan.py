"""A translation planned once: everything decided before the first chip is read.

The plan holds the working grid, the conditions on it, the output grid, the canvas layout, the
output bands and the provenance tags. The translator runs it and the sink (a GeoTIFF or an
in-memory array) writes it; neither recomputes any of it, so a condition is checked once and the
layout is computed once, whatever the surface (API, accessor, CLI) that asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from geocopgen.errors import ConfigError, ModalityError
from geocopgen.io.align import align
from geocopgen.io.readers import OpenedInput
from geocopgen.modalities import get_modality, reading_tags
from geocopgen.models.autoencoder import ModalityAutoencoder
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.options import Reduce, TranslateOptions
from geocopgen.precision import PrecisionPolicy
from geocopgen.raster.grid import GeoBox
from geocopgen.translation.canvas import CanvasLayout
from geocopgen.translation.device import resolve_device_options


@dataclass(frozen=True)
class TranslationPlan:
    """What to make, where, from what. ``conditions`` are ModalityArrays on ``grid`` (the
    working grid); ``out_grid`` is where the result is delivered (``None``: the working grid)."""

    target: str
    grid: GeoBox
    conditions: Mapping[str, xr.DataArray]
    layout: CanvasLayout
    options: TranslateOptions
    bands: tuple[str, ...]
    descriptions: tuple[str, ...]
    precision: PrecisionPolicy
    tags: Mapping[str, Any] = field(default_factory=dict)
    out_grid: GeoBox | None = None

    @property
    def output_grid(self) -> GeoBox:
        return self.out_grid or self.grid

    @property
    def single(self) -> bool:
        """One sample: the output holds exactly the target modality's bands."""
        return self.options.samples == 1

    @property
    def units(self) -> str:
        return get_modality(self.target).units


def layout_for(
    pipeline: CopGenPipeline,
    grid: GeoBox,
    names: Iterable[str],
    overlap_px: int | None = None,
) -> CanvasLayout:
    """The canvas layout of ``grid`` for the codecs of ``names`` and the backbone's chip size."""
    factors = {n: check_codec(pipeline, n).downsampling for n in names}
    if len(set(factors.values())) > 1:
        raise ConfigError(f"the model's autoencoders downsample differently: {factors}")
    factor = next(iter(factors.values()), 8)
    return CanvasLayout.for_grid(
        grid, factor=factor, chip=pipeline.backbone.config.latent_size, overlap_px=overlap_px
    )


def check_codec(pipeline: CopGenPipeline, name: str) -> ModalityAutoencoder:
    """The modality's autoencoder, which must work in physical-unit model space."""
    codec = pipeline.codec(name)
    if not isinstance(codec, ModalityAutoencoder):
        raise ModalityError(
            f"the model's {name} autoencoder is a {type(codec).__name__}, which works on RGB "
            "thumbnails, not on rasters in physical units; use a geocopgen model (e.g. the "
            "bundled default) to translate rasters"
        )
    return codec


def output_bands(name: str, samples: int, reduce: Reduce) -> tuple[list[str], list[str]]:
    """Band names and descriptions of a translation's output."""
    modality = get_modality(name)
    if samples == 1:
        return list(modality.band_names), [b.description or b.name for b in modality.bands]
    return reduced_bands(modality.band_names, samples, reduce)


def reduced_bands(
    bands: Sequence[str], samples: int, reduce: Reduce
) -> tuple[list[str], list[str]]:
    """Names and descriptions of ``bands`` after ``samples`` are reduced: the bands themselves
    for one sample; each band's mean then each one's standard deviation; or every sample,
    sample-major (``B04_s0, B08_s0, B04_s1, ...``)."""
    bands = list(bands)
    if samples == 1:
        return bands, bands
    if reduce == "samples":
        names = [f"{b}_s{k}" for k in range(samples) for b in bands]
        return names, [f"{b}, sample {k}" for k in range(samples) for b in bands]
    names = bands + [f"{b}_std" for b in bands]
    desc = [f"{b}, mean of {samples} samples" for b in bands]
    desc += [f"{b}, standard deviation of {samples} samples" for b in bands]
    return names, desc


def check_conditions(pipeline: CopGenPipeline, target: str, names: list[str]) -> list[str]:
    """Canonical condition names the model takes; the target cannot be one of them."""
    out = []
    for name in names:
        canonical = pipeline.backbone.canonical(name)
        if canonical == target:
            others = ", ".join(m for m in pipeline.modalities if m != canonical)
            raise ModalityError(
                f"the input is already {get_modality(canonical).long_name}; translate it to "
                f"another modality (this model also has {others})"
            )
        check_codec(pipeline, canonical)
        out.append(canonical)
    return out


def provenance(
    pipeline: CopGenPipeline,
    target: str,
    conditions: Mapping[str, xr.DataArray],
    options: TranslateOptions,
    model: str,
) -> dict[str, Any]:
    """Tags that say how an output was made (written upper-case into the GeoTIFF)."""
    tags: dict[str, Any] = {
        "TARGET_MODALITY": target,
        "CONDITIONS": ", ".join(
            f"{name}={a.attrs.get('source', 'array')}" for name, a in conditions.items()
        )
        or "none (unconditional)",
        "MODEL": model,
        "STEPS": options.steps or pipeline.num_inference_steps,
        "SCHEDULER": type(pipeline.scheduler).__name__,
        "SEED": options.seed,
        "SAMPLES": options.samples,
        "SEAMLESS": "multidiffusion" if options.seamless else "off (chips denoised independently)",
        "SEED_RULE": "initial noise seeded per 8x8 latent block of the CRS pixel lattice",
    }
    if options.samples > 1:
        tags["SAMPLE_REDUCTION"] = options.reduce
    for name, array in conditions.items():
        tags.update(reading_tags(array.attrs, name.upper()))
    return tags


def plan_translation(
    pipeline: CopGenPipeline,
    target: str,
    grid: GeoBox,
    conditions: Mapping[str, xr.DataArray | OpenedInput],
    options: TranslateOptions,
    *,
    out_grid: GeoBox | None = None,
    model: str = "",
    tags: Mapping[str, Any] | None = None,
) -> TranslationPlan:
    """Check the conditions against the model, lay out the canvas and name the outputs, once.

    Conditions on another grid are resampled onto ``grid`` (:func:`geocopgen.io.align`, with a
    warning each); those already on it are used as they are.
    """
    if options.strength is not None:
        raise ConfigError(
            "strength applies to COP-GEN-layout models (the bundled model, converted COP-GEN "
            "weights); this 4-modality model always samples from pure noise"
        )
    target = pipeline.backbone.canonical(target)
    check_codec(pipeline, target)
    options, precision = resolve_device_options(options, pipeline.backbone)
    names = check_conditions(pipeline, target, list(conditions))
    conditions = (
        align(dict(zip(names, conditions.values(), strict=True)), like=grid) if names else {}
    )
    layout = layout_for(pipeline, grid, [target, *names], options.overlap)
    bands, descriptions = output_bands(target, options.samples, options.reduce)
    all_tags = {
        **provenance(pipeline, target, conditions, options, model),
        "PRECISION": precision.tag,
        "CHIP_SIZE": layout.chip_px,
        "OVERLAP": layout.overlap_px,
        **(tags or {}),
    }
    return TranslationPlan(
        target=target,
        grid=grid,
        conditions=conditions,
        layout=layout,
        options=options,
        bands=tuple(bands),
        descriptions=tuple(descriptions),
        precision=precision,
        tags=all_tags,
        out_grid=None if out_grid == grid else out_grid,
    )
