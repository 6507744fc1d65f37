"""Translation with a COP-GEN model: one latent canvas per resolution group, MultiDiffusion on all
of them at every solver call, outputs on each group's native grid.

1. **Encode.** Each condition modality (on the 10 m working grid) is resampled onto the grid of
   each of its groups (average: every group is as coarse or coarser), put into COP-GEN's model
   units by its official normalisation (Sentinel-2 reflectance back to the digital numbers
   COP-GEN was trained on, see :func:`dn_offset_for`), encoded chip by chip (posterior mean) and
   blended into that group's canvas.
2. **Denoise.** COP-GEN's own solver (:class:`~geocopgen.copgen.sampler.DPMSolverFast`, the
   official preset) runs on the joint vector of the generated groups' canvases. Each of its model
   calls cuts every chip out of every canvas, adds the chip's lat/lon token (its centre, from the
   grid), the date token and the conditions, runs the backbone on batches of chips, and blends
   the chips' noise predictions back into one prediction per canvas with raised-cosine weights.
   Slots that are neither generated nor conditions get fresh noise at t = 0 per call (the
   official treatment) unless the model says ``ignored="omit"``.
3. **Decode.** Each generated group's pixel chips are decoded and blended into its own mosaic on
   its native grid: physical units for continuous slots, blended class scores turned into class
   codes at the end for categorical ones. Continuous values follow the one domain rule of every
   model (:mod:`geocopgen.domain`): each sample clipped to its modality's physical domain,
   counted, tagged ``CLIPPED_TO_DOMAIN`` and warned about; the codecs' limits are counted too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from geocopgen.copgen import normalisation as norm
from geocopgen.copgen.layout import (
    DATE_SLOT,
    LATLON_SLOT,
    MODALITY_SLOTS,
    modality_of_slot,
    registry_band,
    registry_bands,
    slot,
)
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.sampler import (
    NUM_TRAIN_TIMESTEPS,
    CopgenSamplerPreset,
    DiscreteVPSchedule,
    DPMSolverFast,
    as_noise,
    flat_guesses,
    initial_state,
)
from geocopgen.copgen.units import CATEGORIES, count_limits, physical_from_model, to_model_units
from geocopgen.domain import DomainGuard
from geocopgen.errors import (
    ConfigError,
    GeoCopGenWarning,
    ModalityError,
    NoValidDataError,
    warn,
)
from geocopgen.io.align import reproject
from geocopgen.io.readers import OpenedInput, bands_on_grid
from geocopgen.modalities import S2_OFFSET_DN, S2_OFFSET_START, reading_tags
from geocopgen.options import TranslateOptions
from geocopgen.precision import PrecisionPolicy
from geocopgen.prefetch import prefetch, to_device
from geocopgen.raster.chips import Chip
from geocopgen.raster.grid import GeoBox, pixel_size
from geocopgen.translation.canvas import (
    CanvasLayout,
    add_weighted,
    positional_noise,
    weight_sum,
)
from geocopgen.translation.cost import DenoiseClock, announce_plan
from geocopgen.translation.device import device_of, resolve_device_options
from geocopgen.translation.groups import GroupLayout
from geocopgen.translation.streaming import (
    ChipSink,
    batched,
    decode_chips,
    encode_chips,
    reduce_samples,
)
from geocopgen.translation.validity import PixelMask


@dataclass(frozen=True)
class Keep:
    """What a gap fill keeps of the generated modality (:mod:`geocopgen.translation.fill`).

    ``opened`` is that modality's input, read onto each group's grid as a condition is;
    ``fill`` says, on the scene grid, which pixels are to be filled (``True``): they are made
    invalid on every group's grid (a coarser pixel that covers one of them too) before
    encoding. A latent cell whose pixels are all kept is held to the encoded input at every
    solver call; the rest is generated.
    """

    opened: OpenedInput
    fill: np.ndarray

    def on(self, canvas: CanvasLayout, scene: GeoBox, *, cells: bool = False) -> np.ndarray:
        """``fill`` on ``canvas``'s pixel grid (``cells``: its latent cells): a coarse pixel
        is to be filled if any scene pixel inside it is, or if it lies past the scene."""
        step = round(pixel_size(canvas.grid)[0] / pixel_size(scene)[0])
        rows, cols = canvas.shape if cells else canvas.grid.shape
        step *= canvas.factor if cells else 1
        out = np.ones((rows * step, cols * step), dtype=bool)
        h, w = (min(a, b) for a, b in zip(self.fill.shape, out.shape, strict=True))
        out[:h, :w] = self.fill[:h, :w]
        return out.reshape(rows, step, cols, step).any(axis=(1, 3))


@dataclass(frozen=True)
class GroupedPlan:
    """A COP-GEN translation planned once: which slots to generate, from what, where; with
    ``keep``, a gap fill: the generated modality's clear cells are held to the input."""

    targets: tuple[str, ...]
    conditions: Mapping[str, OpenedInput]
    condition_slots: Mapping[str, tuple[str, ...]]
    layout: GroupLayout
    options: TranslateOptions
    when: date | None
    dn_offset: int
    preset: CopgenSamplerPreset
    precision: PrecisionPolicy
    tags: Mapping[str, Any] = field(default_factory=dict)
    keep: Keep | None = None

    def output_bands(self, key: str) -> tuple[str, ...]:
        """The output band names of a generated slot (registry names, registry order)."""
        return registry_bands(slot(key))


def dn_offset_for(conditions: Mapping[str, OpenedInput], when: date | None, policy: str) -> int:
    """The DN offset the digital numbers given to and taken from COP-GEN carry.

    COP-GEN was trained on Major TOM digital numbers as the products delivered them: products of
    processing baseline 04.00 and later (from 2022-01-25) carry +1000. With ``policy="stored"``
    (default) geocopgen puts back what the product stored: the S2 condition's own offset, else
    the one its date implies. ``policy="reflectance"`` gives DN = reflectance x 10 000.
    """
    if policy == "reflectance":
        return 0
    if policy != "stored":
        raise ConfigError(f"s2 DN policy must be 'stored' or 'reflectance', got {policy!r}")
    for name, opened in conditions.items():
        if name.startswith("s2") and "s2_offset" in opened.array.attrs:
            return int(opened.array.attrs["s2_offset"])
    if when is None:  # a model that leaves the date out, asked for stored DN without one
        raise ConfigError(
            "stored Sentinel-2 digital numbers carry +1000 from 2022-01-25, and neither an S2 "
            "input nor a date says which applies; give date='YYYY-MM-DD' (CLI --date) or "
            "s2_dn='reflectance'"
        )
    return S2_OFFSET_DN if when >= S2_OFFSET_START else 0


def acquisition_date(
    conditions: Mapping[str, OpenedInput], given: date | str | None, *, required: bool = True
) -> date | None:
    """The date COP-GEN conditions on: ``given``, else an input's ``datetime``; when nothing
    says, refused if ``required`` (the official code would silently use a default), else
    ``None`` (a model that omits absent slots leaves the date slot out)."""
    if given is not None:
        return given if isinstance(given, date) else date.fromisoformat(str(given)[:10])
    for opened in conditions.values():
        when = opened.array.attrs.get("datetime")
        if when:
            return date.fromisoformat(str(when)[:10])
    if not required:
        return None
    raise ConfigError(
        "COP-GEN conditions on the acquisition date, and no input carries one (a datetime tag or "
        "a product id); give it: date='YYYY-MM-DD' (CLI --date YYYY-MM-DD)"
    )


def target_slots(model: CopgenModel, to: str) -> tuple[str, ...]:
    """The image slots of modality (or slot key) ``to`` that this model can decode."""
    keys = MODALITY_SLOTS.get(to.lower(), (to,) if to in {s.key for s in model.slots} else ())
    if not keys:
        raise ModalityError(
            f"COP-GEN makes {', '.join(MODALITY_SLOTS)} (or a slot key), not {to!r}"
        )
    missing = [k for k in keys if k not in model.encodable]
    if missing:
        raise ModalityError(
            f"this COP-GEN model has no VAE for {', '.join(missing)}, so it cannot make {to}; "
            f"it decodes {', '.join(model.encodable) or 'nothing'}"
        )
    return keys


def plan_grouped(
    model: CopgenModel,
    to: str,
    scene: GeoBox,
    conditions: Mapping[str, OpenedInput],
    options: TranslateOptions,
    *,
    when: date | str | None = None,
    dn_policy: str = "model",
    overlap_m: float | None = None,
    tags: Mapping[str, Any] | None = None,
    keep: Keep | None = None,
) -> GroupedPlan:
    """Check the request against the model and lay out every group's canvas, once; ``keep``
    makes it a gap fill of ``to`` (see :class:`Keep`)."""
    targets = target_slots(model, to)
    _refuse_unsupported(options, targets)
    condition_slots: dict[str, tuple[str, ...]] = {}
    for name in conditions:
        keys = tuple(k for k in MODALITY_SLOTS.get(name, ()) if k in model.encodable)
        if not keys:
            raise ModalityError(f"this COP-GEN model cannot encode {name} (no VAE for its slots)")
        if set(keys) & set(targets):
            raise ModalityError(f"the input is already {name}; translate it to another modality")
        condition_slots[name] = keys
    options, precision = resolve_device_options(options, model.backbone)
    inputs = dict(conditions) if keep is None else {to.lower(): keep.opened, **conditions}
    day = acquisition_date(inputs, when, required=model.ignored != "omit")
    dn_policy = model.s2_dn if dn_policy == "model" else dn_policy
    offset = dn_offset_for(inputs, day, dn_policy)
    preset = sampler_preset(model, options)
    canvases = [*targets, *(k for keys in condition_slots.values() for k in keys)]
    layout = GroupLayout.for_scene(scene, canvases, overlap_m)
    reading = {k: v for n, c in conditions.items()
               for k, v in reading_tags(c.array.attrs, n.upper()).items()}  # fmt: skip
    all_tags = {
        "TARGET_SLOTS": ", ".join(targets),
        "CONDITIONS": ", ".join(f"{n}={c.array.attrs.get('source', 'array')}"
                                for n, c in conditions.items()) or "none (unconditional)",
        "DATE": day.isoformat() if day else "unknown (the date slot left out)",
        "COPGEN_S2_DN_OFFSET": offset,
        "COPGEN_S2_DN_POLICY": dn_policy,
        "SAMPLER": f"COP-GEN DPM-Solver preset, {preset.steps} model calls"
        + ("" if preset.steps == model.preset.steps
           else f" (the published preset makes {model.preset.steps})")
        + (f", from the first guess at t = {preset.t_start:g}" if preset.t_start < 1 else ""),
        "IGNORED_SLOTS": model.ignored,
        "PRECISION": precision.tag,
        "SEED": options.seed,
        "SAMPLES": options.samples,
        "CONDITION_LATENTS": "posterior mean" if options.posterior == "mean"
        else "posterior sample (official)",
        "CHIP_GROUND_M": 1920,
        "OVERLAP_M": layout.overlap_units * 480,
        **reading,
        **(tags or {}),
    }  # fmt: skip
    return GroupedPlan(targets, dict(conditions), condition_slots, layout, options, day, offset,
                       preset, precision, all_tags, keep)  # fmt: skip


def sampler_preset(model: CopgenModel, options: TranslateOptions) -> CopgenSamplerPreset:
    """The model's sampler with the request's ``steps`` and ``strength`` where given."""
    preset = model.preset if options.steps is None else replace(model.preset, steps=options.steps)
    return preset if options.strength is None else replace(preset, t_start=options.strength)


def _refuse_unsupported(options: TranslateOptions, targets: Sequence[str]) -> None:
    """Options the 4-modality translator has and this one does not yet: refused, not ignored."""
    if not options.seamless:
        raise ConfigError(
            "seamless=False (--no-seamless) is not supported for COP-GEN models yet; their chips "
            "are always blended (overlap=0 denoises chips without overlap)"
        )
    classes = [k for k in targets if k in CATEGORIES]
    if options.reduce == "samples" and options.samples > 1 and classes:
        raise ConfigError(
            f"reduce='samples' is not supported for class slots ({', '.join(classes)}): their "
            "samples' class scores are averaged into one map; generate one seed at a time"
        )


# --- 1. encode ------------------------------------------------------------------------------
def encode_condition(
    model: CopgenModel, plan: GroupedPlan, name: str, key: str, *, progress: bool
) -> tuple[torch.Tensor, np.ndarray, int, GridMask]:
    """One condition slot's canvas ``(1, 8, H, W)``, which chips hold valid pixels, (for the
    DEM) how many pixels lie at or below 0 m, which COP-GEN's codec floors, and which pixels of
    its grid hold data."""
    return encode_slot(model, plan, plan.conditions[name], key, progress=progress)


def encode_slot(
    model: CopgenModel,
    plan: GroupedPlan,
    opened: OpenedInput,
    key: str,
    *,
    progress: bool,
    hide: np.ndarray | None = None,
) -> tuple[torch.Tensor, np.ndarray, int, GridMask]:
    """Slot ``key`` of an input encoded onto its canvas (see :func:`encode_condition`), its
    pixels ``hide`` (on the group's grid) made invalid first."""
    canvas = plan.layout.canvases[key]
    s = slot(key)
    bands = [registry_band(s, b) for b in s.bands]
    sub = group_pixels(opened, bands, canvas.grid)
    if hide is not None:
        sub = sub.where(xr.DataArray(~hide, dims=("y", "x")))
    device = device_of(model.backbone)
    floored = int((sub <= 0).sum().compute()) if key == "DEM_DEM" else 0
    sample = plan.options.posterior == "sample"  # the official posterior sample, on request
    generator = torch.Generator(device=device).manual_seed(plan.options.seed) if sample else None

    def encode(x: np.ndarray, finite: np.ndarray) -> torch.Tensor:
        y = to_device(to_model_units(key, x, plan.dn_offset), device)
        with plan.precision.for_codecs():
            return model.encode(key, y, sample=sample, generator=generator).float()

    latents, has_data, observed = encode_chips(
        encode,
        sub,
        canvas,
        channels=s.latent_shape[0],
        device=device,
        batch_size=plan.options.batch_size,
        progress=progress,
        desc=f"encoding {key}",
    )
    return latents, has_data, floored, GridMask(observed, pixel_size(canvas.grid)[0])


def group_pixels(opened: OpenedInput, bands: Sequence[str], grid: GeoBox) -> xr.DataArray:
    """One resolution group's ``bands`` of a condition on the group's ``grid``: read from the
    input's files straight onto it (a band stored at the group's resolution is read as stored),
    or, for an input without files (an array a user gave), its bands resampled from its own
    grid."""
    direct = bands_on_grid(opened, bands, grid)
    if direct is not None:
        return direct
    with warnings.catch_warnings():  # an announced derivation, not a surprise resampling
        warnings.simplefilter("ignore")
        return reproject(opened.array.sel(band=list(bands)), grid, warn=False)


def kept_cells(model: CopgenModel, plan: GroupedPlan, key: str) -> tuple[torch.Tensor, np.ndarray]:
    """A gap fill's kept input of generated slot ``key``: its canvas ``(1, C, H, W)`` and which
    latent cells ``(H, W)`` hold only kept pixels (a cell is 8 pixels of its group: 80 m at
    10 m, 480 m at 60 m; a cell with one pixel to fill is generated whole)."""
    keep, canvas, scene = plan.keep, plan.layout.canvases[key], plan.layout.scene
    assert keep is not None
    latents, *_ = encode_slot(model, plan, keep.opened, key, progress=plan.options.progress,
                              hide=keep.on(canvas, scene))  # fmt: skip
    kept = ~keep.on(canvas, scene, cells=True)
    return latents, kept


@dataclass(frozen=True)
class Known:
    """Kept latents flattened like the solver's state: ``values`` where ``where`` is true.

    At every model call the noise prediction there is replaced by the one that makes the solver's
    clean estimate equal the kept latent, ``ε = (x - α z) / σ``: the kept cells follow
    ``α_t z + σ_t ε₀`` (the input noised to the current time, as RePaint's replacement does, but
    without a second noise draw), and the generated cells are denoised beside them, so the
    canvas stays one seamless sample.
    """

    values: torch.Tensor
    where: torch.Tensor

    def hold(self, eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
             schedule: DiscreteVPSchedule) -> torch.Tensor:  # fmt: skip
        alpha = schedule.alpha(t).reshape(-1, 1).to(x)
        sigma = schedule.sigma(t).reshape(-1, 1).to(x)
        return torch.where(self.where, (x - alpha * self.values) / sigma, eps)

    def start(self, state: torch.Tensor, noise: torch.Tensor, t_start: float,
              schedule: DiscreteVPSchedule) -> torch.Tensor:  # fmt: skip
        """The solver's first ``state`` with the kept cells the input noised to ``t_start`` by
        the same ``noise``."""
        t = torch.full((state.shape[0],), float(t_start), device=state.device)
        alpha = schedule.alpha(t).reshape(-1, 1).to(state)
        sigma = schedule.sigma(t).reshape(-1, 1).to(state)
        return torch.where(self.where, alpha * self.values + sigma * noise, state)


# --- 2. denoise -----------------------------------------------------------------------------
@dataclass
class _Chips:
    """The active chips, and what every model call needs per chip besides the canvases."""

    positions: list[tuple[int, int]]
    latlon: torch.Tensor  # (rows, cols, 1, 1, 3)
    date: torch.Tensor | None  # (1, 1, 1, 3); None: the date slot is left out


def denoise_groups(
    model: CopgenModel,
    plan: GroupedPlan,
    conditions: Mapping[str, torch.Tensor],
    active: np.ndarray,
    kept: Mapping[str, tuple[torch.Tensor, np.ndarray]] | None = None,
) -> dict[str, torch.Tensor]:
    """The generated slots' final canvases ``(samples, 8, H, W)`` each; ``kept`` (a gap fill,
    see :func:`kept_cells`) holds their kept cells to the input."""
    opts, canvases = plan.options, plan.layout.canvases
    device = device_of(model.backbone)
    samples = opts.samples
    lonlat = plan.layout.chip_centres_lonlat()
    chips = _Chips(
        positions=[(int(i), int(j)) for i, j in zip(*np.nonzero(active), strict=True)],
        latlon=norm.encode_latlon(lonlat[..., 1].ravel(), lonlat[..., 0].ravel())
        .reshape(*lonlat.shape[:2], 1, 1, 3)
        .to(device),
        date=None
        if plan.when is None
        else norm.encode_date(plan.when).reshape(1, 1, 1, 3).to(device),
    )
    shapes = {k: (samples, slot(k).latent_shape[0], *canvases[k].shape) for k in plan.targets}
    start = [
        positional_noise(canvases[k], slot(k).latent_shape[0], samples, opts.seed + 7919 * i)
        for i, k in enumerate(plan.targets)
    ]
    sizes = [z[0].numel() for z in start]
    guess = flat_guesses(
        model.first_guess, conditions, plan.targets, [z.to(device) for z in start], samples
    )
    weights = {
        k: weight_sum(canvases[k].latent_chips, _chips(canvases[k], chips.positions),
                      canvases[k].shape, device)
        for k in plan.targets
    }  # fmt: skip
    per_call = max(1, opts.batch_size // samples)
    batches = list(batched(chips.positions, per_call))
    generator = torch.Generator(device="cpu").manual_seed(opts.seed)
    bar = tqdm(
        total=plan.preset.steps * len(batches), desc="denoising", unit="batch",
        disable=not opts.progress,
    )  # fmt: skip
    clock = DenoiseClock(
        chips=len(chips.positions), calls=plan.preset.steps, batches=len(batches),
        batch_size=per_call * samples, precision=plan.precision, progress=opts.progress,
    )  # fmt: skip

    def noise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        state = {
            k: z.reshape(shapes[k]) for k, z in zip(plan.targets, x.split(sizes, 1), strict=True)
        }
        pred = {k: torch.zeros(shapes[k], device=device) for k in plan.targets}
        for batch in batches:
            inputs, times = _chip_inputs(model, plan, state, conditions, chips, batch, t, generator)
            with clock.batch(), plan.precision.for_backbone():
                out = model.backbone(inputs, times).sample
            for k in plan.targets:
                _blend(pred[k], canvases[k], batch, out[k].float(), samples)
            bar.update(1)
        out = torch.cat([(pred[k] / weights[k]).reshape(samples, -1) for k in plan.targets], 1)
        eps = as_noise(out, x, t, schedule, model.prediction, guess)
        return eps if known is None else known.hold(eps, x, t, schedule)

    schedule = DiscreteVPSchedule.copgen()
    solver = DPMSolverFast(noise, schedule)
    known = _flat_known(kept, plan.targets, shapes, device) if kept else None
    with bar, torch.inference_mode():
        x0 = torch.cat([z.to(device).reshape(samples, -1) for z in start], dim=1)
        state = initial_state(x0, guess, plan.preset, schedule)
        if known is not None:
            state = known.start(state, x0, plan.preset.t_start, schedule)
        final = solver.sample(state, plan.preset)
    return {
        k: z.reshape(shapes[k]) for k, z in zip(plan.targets, final.split(sizes, 1), strict=True)
    }


def _flat_known(
    kept: Mapping[str, tuple[torch.Tensor, np.ndarray]],
    targets: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    device: torch.device,
) -> Known:
    """The kept canvases and cells of ``targets`` laid out like the solver's flat state."""
    values, where = [], []
    for k in targets:
        z, cells = kept[k]
        values.append(z.to(device).expand(shapes[k]).reshape(shapes[k][0], -1))
        mask = torch.from_numpy(cells).to(device)
        where.append(mask.expand(shapes[k]).reshape(shapes[k][0], -1))
    return Known(torch.cat(values, 1), torch.cat(where, 1))


def _chip(canvas: CanvasLayout, position: tuple[int, int]) -> Chip:
    return canvas.latent_chips.chip(*position)


def _chips(canvas: CanvasLayout, positions: Sequence[tuple[int, int]]) -> list[Chip]:
    return [_chip(canvas, p) for p in positions]


def _chip_inputs(
    model: CopgenModel,
    plan: GroupedPlan,
    state: Mapping[str, torch.Tensor],
    conditions: Mapping[str, torch.Tensor],
    chips: _Chips,
    batch: Sequence[tuple[int, int]],
    t: torch.Tensor,
    generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every slot's input for a batch of chips (chip-major, samples inside) and its time."""
    canvases, samples = plan.layout.canvases, plan.options.samples
    n = len(batch) * samples
    t_net = (t * NUM_TRAIN_TIMESTEPS).repeat(len(batch))
    zero = torch.zeros_like(t_net)
    inputs: dict[str, torch.Tensor] = {}
    times: dict[str, torch.Tensor] = {}
    for k in plan.targets:
        inputs[k] = torch.cat([state[k][(..., *_chip(canvases[k], p).slices)] for p in batch])
        times[k] = t_net
    for k, z in conditions.items():
        cut = torch.cat([z[(..., *_chip(canvases[k], p).slices)] for p in batch])
        inputs[k], times[k] = cut.repeat_interleave(samples, dim=0), zero
    latlon = torch.cat([chips.latlon[p][None] for p in batch]).repeat_interleave(samples, dim=0)
    inputs[LATLON_SLOT], times[LATLON_SLOT] = latlon, zero
    if chips.date is not None:
        inputs[DATE_SLOT], times[DATE_SLOT] = chips.date.expand(n, -1, -1, -1), zero
    if model.ignored == "noise":
        for s in model.slots:  # slot order: the official order of the fresh draws
            if s.key not in inputs:
                shape = (n, *model.backbone.latent_shape_of(s.key))
                noise = torch.randn(shape, generator=generator)
                inputs[s.key], times[s.key] = to_device(noise, t.device), zero
    return inputs, times


def _blend(
    pred: torch.Tensor,
    canvas: CanvasLayout,
    batch: Sequence[tuple[int, int]],
    out: torch.Tensor,
    samples: int,
) -> None:
    """Add each chip's prediction ``(chips * samples, C, h, w)``, weighted, onto ``pred``."""
    values = out.reshape(len(batch), samples, *out.shape[1:])
    add_weighted(pred, canvas.latent_chips, _chips(canvas, batch), values)


# --- 3. decode ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridMask:
    """Which pixels of a condition's grid hold data, and that grid's pixel size."""

    mask: PixelMask
    res: float


class ValidOn:
    """Where every condition holds data, looked up on another group's grid.

    All group grids share the scene's origin, so an output pixel's centre falls in the
    condition pixel ``floor((i + 0.5) * res_out / res_cond)`` along each axis, exactly.
    """

    def __init__(self, masks: Sequence[GridMask], res: float) -> None:
        self.masks, self.res = masks, res

    def get(self, rows: slice, cols: slice) -> np.ndarray:
        out = np.ones((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
        for m in self.masks:
            r = ((np.arange(rows.start, rows.stop) + 0.5) * self.res / m.res).astype(np.int64)
            c = ((np.arange(cols.start, cols.stop) + 0.5) * self.res / m.res).astype(np.int64)
            r = np.minimum(r, m.mask.height - 1)
            c = np.minimum(c, m.mask.width - 1)
            block = m.mask.get(slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
            out &= block[np.ix_(r - r[0], c - c[0])]
        return out


def decode_group(
    model: CopgenModel,
    plan: GroupedPlan,
    key: str,
    latents: torch.Tensor,
    sink: ChipSink,
    valid: ValidOn | None = None,
) -> dict[str, int]:
    """Decode one generated slot's canvas into ``sink`` (nodata where ``valid`` says a condition
    has none), a continuous slot's values clipped to its modality's domain, the count tagged and
    warned about (:class:`~geocopgen.domain.DomainGuard`, as for every model); returns how many
    output values hit a limit of COP-GEN's codecs (reported, not silent)."""
    s, canvas = slot(key), plan.layout.canvases[key]
    order = [registry_band(s, b) for b in s.bands]
    index = [order.index(b) for b in plan.output_bands(key)] if key not in CATEGORIES else None
    limits: dict[str, int] = {}

    def decode(z: torch.Tensor) -> torch.Tensor:
        with plan.precision.for_codecs():
            y = model.decode(key, z).float()
        values = physical_from_model(key, y, plan.dn_offset)
        count_limits(key, values, limits)
        return values if index is None else values[:, index]

    def reduce(x: np.ndarray) -> np.ndarray:
        if key in CATEGORIES:
            return x.mean(axis=0).astype(np.float32)
        return reduce_samples(x, plan.options.reduce)

    guard = None if key in CATEGORIES else DomainGuard(modality_of_slot(key), canvas.pixel_chips)
    chips = decode_chips(decode, latents, canvas, valid=valid, reduce=reduce, guard=guard,
                         progress=plan.options.progress, desc=f"decoding {key}")  # fmt: skip
    for chip, values in prefetch(chips, depth=2):  # the next chips decode while this one writes
        if values is None:
            sink.skip(chip)
        else:
            sink.add(chip, values)
    if guard is not None:
        guard.report(sink)
    return limits


# --- the whole operation ----------------------------------------------------------------------
def run_grouped(
    model: CopgenModel, plan: GroupedPlan, sinks: Mapping[str, ChipSink]
) -> dict[str, dict[str, int]]:
    """Encode, denoise and decode ``plan`` into one sink per generated slot; returns the codec
    limit counts per slot."""
    latents: dict[str, torch.Tensor] = {}
    active = np.ones(plan.layout.chip_shape, dtype=bool)
    announce_plan(
        chips=active.size, calls=plan.preset.steps, batch_size=int(plan.options.batch_size),
        precision=plan.precision, progress=plan.options.progress,
    )  # fmt: skip
    floored = 0
    masks: list[GridMask] = []
    for name, keys in plan.condition_slots.items():
        for key in keys:
            latents[key], has_data, low, mask = encode_condition(
                model, plan, name, key, progress=plan.options.progress
            )
            active &= has_data
            floored += low
            if key == keys[0]:  # the finest group says where the data is (a coarser one's
                masks.append(mask)  # edge pixel also covers ground outside the raster)
    if not active.any():
        raise NoValidDataError(
            "no part of the scene has valid data in every condition, so there is nothing to "
            "translate. Check the inputs' nodata values and that they overlap."
        )
    kept = {k: kept_cells(model, plan, k) for k in plan.targets} if plan.keep else None
    final = denoise_groups(model, plan, latents, active, kept)
    counts = {}
    for key in plan.targets:
        valid = ValidOn(masks, pixel_size(plan.layout.canvases[key].grid)[0]) if masks else None
        counts[key] = decode_group(model, plan, key, final[key], sinks[key], valid)
        if floored:
            counts[key]["DEM_INPUT_FLOORED_AT_0M"] = floored
    for key, found in counts.items():
        hits = {k: v for k, v in found.items() if v}
        if hits:
            warn(
                f"{key}: {', '.join(f'{v} values {k.lower()}' for k, v in hits.items())} "
                "(limits of COP-GEN's codecs, see docs/copgen.md)",
                GeoCopGenWarning,
            )
    return counts
