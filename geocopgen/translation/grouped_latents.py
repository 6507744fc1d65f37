"""A raster's latents and back, for every model: one latent canvas (4-modality models) or one per
COP-GEN slot, each on its own latent grid (``geocopgen.api.encode`` / ``decode``).

A COP-GEN modality's latents are one georeferenced array per slot (an S2 modality: its 10, 20
and 60 m groups on 24, 12 and 4 latent cells per 1920 m chip), encoded by
:func:`~geocopgen.translation.grouped.encode_condition` (the canvases, chips and pixel path of a
translation's conditions) and decoded by :func:`~geocopgen.translation.grouped.decode_group`
into the same mosaics a translation writes, so ``decode(encode(x))`` is what a translation would
make of latents it generated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from affine import Affine

from geocopgen.copgen.layout import MODALITY_SLOTS
from geocopgen.copgen.model import CopgenModel
from geocopgen.errors import InputError, ModalityError
from geocopgen.io.readers import OpenedInput
from geocopgen.options import TranslateOptions, WriteOptions
from geocopgen.raster.grid import GeoBox, grid_of, make_grid, rasterio_crs, xy_coords
from geocopgen.translation.canvas import CanvasLayout


def latent_array(
    latents: torch.Tensor,
    layout: CanvasLayout,
    has_data: np.ndarray,
    crs: Any,
    name: str,
    attrs: Mapping[str, Any],
) -> xr.DataArray:
    """A latent canvas ``(C, H, W)`` as a georeferenced ``(latent, y, x)`` array on its latent
    grid; cells no chip with valid pixels covers are NaN."""
    values = latents.float().cpu().numpy()
    covered = np.zeros(layout.shape, dtype=bool)
    for chip in layout.latent_chips:
        if has_data[chip.row, chip.col]:
            covered[chip.slices] = True
    values[:, ~covered] = np.nan
    rows, cols = layout.shape
    latent_grid = GeoBox((rows, cols), layout.latent_transform, crs)
    x, y = xy_coords(latent_grid)
    out = xr.DataArray(
        values,
        dims=("latent", "y", "x"),
        coords={"latent": np.arange(values.shape[0]), "y": y, "x": x},
        name=name,
        attrs=dict(attrs),
    )
    out = out.rio.write_crs(rasterio_crs(latent_grid)).rio.write_transform(layout.latent_transform)
    return out.rio.write_nodata(np.nan, encoded=False)


def _plan(
    model: CopgenModel,
    scene: GeoBox,
    conditions: Mapping[str, OpenedInput],
    condition_slots: Mapping[str, tuple[str, ...]],
    targets: tuple[str, ...],
    options: TranslateOptions,
    overlap_m: float | None,
    dn_offset: int | None = None,
    tags: Mapping[str, Any] | None = None,
):
    """A :class:`GroupedPlan` that only encodes (``condition_slots``) or only decodes
    (``targets``): the canvases of those slots over ``scene``."""
    from geocopgen.translation.device import resolve_device_options
    from geocopgen.translation.grouped import GroupedPlan, acquisition_date, dn_offset_for
    from geocopgen.translation.groups import GroupLayout

    options, precision = resolve_device_options(options, model.backbone)
    day = acquisition_date(conditions, None, required=False) if conditions else None
    if dn_offset is None:  # only Sentinel-2 pixels have an offset to decide
        s2 = any(n.startswith("s2") for n in conditions)
        dn_offset = dn_offset_for(conditions, day, model.s2_dn) if s2 else 0
    keys = [*targets, *(k for ks in condition_slots.values() for k in ks)]
    layout = GroupLayout.for_scene(scene, keys, overlap_m)
    return GroupedPlan(targets, dict(conditions), dict(condition_slots), layout, options, day,
                       dn_offset, model.preset, precision, dict(tags or {}))  # fmt: skip


def slots_of(model: CopgenModel, name: str) -> tuple[str, ...]:
    """The slots of modality ``name``, which ``model`` must be able to encode and decode."""
    keys = MODALITY_SLOTS.get(name, ())
    if not keys or any(k not in model.vaes for k in keys):
        raise ModalityError(
            f"this COP-GEN model cannot encode {name} whole (it has codecs for "
            f"{', '.join(model.encodable) or 'no slot'}); pass a model with a codec per group"
        )
    return keys


def encode_groups(
    model: CopgenModel,
    opened: OpenedInput,
    scene: GeoBox,
    *,
    overlap_m: float | None,
    batch_size: int,
    progress: bool,
    model_name: str,
) -> dict[str, xr.DataArray]:
    """One latent array per slot of an input's modality, on the slot's latent canvas over
    ``scene`` (the 10 m working grid); ``attrs`` keep what :func:`decode_groups` needs."""
    from geocopgen.translation.grouped import encode_condition

    array = opened.array
    name = array.attrs["modality"]
    keys = slots_of(model, name)
    options = TranslateOptions(batch_size=batch_size, progress=progress)
    plan = _plan(model, scene, {name: opened}, {name: keys}, (), options, overlap_m)
    pixels = grid_of(array)
    out = {}
    for key in keys:
        latents, has_data, _, _ = encode_condition(model, plan, name, key, progress=progress)
        canvas = plan.layout.canvases[key]
        out[key] = latent_array(latents[0], canvas, has_data, scene.crs, f"{key}_latents", {
            "modality": name,
            "slot": key,
            "source": str(array.attrs.get("source", "")),
            "model": model_name,
            "downsampling": canvas.factor,
            "scaling_factor": model.scale_factor(key),
            "dn_offset": plan.dn_offset,
            "overlap_m": plan.layout.overlap_units * 480,
            "scene": [scene.width, scene.height, *tuple(scene.affine)[:6]],
            "pixel_grid": [pixels.width, pixels.height, *tuple(pixels.affine)[:6]],
            "pixel_crs": rasterio_crs(pixels).to_string(),
        })  # fmt: skip
    return out


def decode_groups(
    model: CopgenModel,
    latents: Mapping[str, xr.DataArray],
    *,
    output: str | os.PathLike | None,
    overwrite: bool,
    progress: bool,
) -> xr.DataArray:
    """Latents from :func:`encode_groups` back to one ModalityArray on the pixel grid they came
    from (its CRS's 10 m working grid when that grid was not projected), every group resampled
    there as a translation's ``grid="input"`` does; in memory or streamed to ``output``."""
    from geocopgen.translation.device import device_of
    from geocopgen.translation.grouped import decode_group
    from geocopgen.translation.grouped_output import run_grouped_into

    first = next(iter(latents.values()))
    if any("slot" not in a.attrs or "scene" not in a.attrs for a in latents.values()):
        raise InputError("decode() needs the per-slot latents encode() made with a COP-GEN model")
    scene = _grid(first.attrs["scene"], first.rio.crs)
    pixels = _grid(first.attrs["pixel_grid"], first.attrs["pixel_crs"])
    out_grid = pixels if rasterio_crs(pixels) == rasterio_crs(scene) else scene
    keys = tuple(latents)
    options = TranslateOptions(progress=progress)
    tags = {"OPERATION": "decode", "MODEL": first.attrs.get("model", "")}
    plan = _plan(model, scene, {}, {}, keys, options, float(first.attrs["overlap_m"]),
                 dn_offset=int(first.attrs["dn_offset"]), tags=tags)  # fmt: skip
    canvases = {}
    for key, array in latents.items():
        h, w = plan.layout.canvases[key].shape
        values = torch.from_numpy(np.nan_to_num(np.asarray(array.values, dtype=np.float32)))
        pad = (0, w - values.shape[2], 0, h - values.shape[1])
        canvas = torch.nn.functional.pad(values[None], pad, mode="replicate")
        canvases[key] = canvas.to(device_of(model.backbone))

    def run(m: CopgenModel, p: Any, sinks: Mapping[str, Any]) -> dict[str, dict[str, int]]:
        return {k: decode_group(m, p, k, canvases[k], sinks[k]) for k in p.targets}

    writing = WriteOptions(path=output, overwrite=overwrite)
    return run_grouped_into(model, plan, writing, out_grid=out_grid, run=run)


def _grid(record: list[float], crs: Any) -> GeoBox:
    width, height, *affine = record
    return make_grid(crs, Affine(*affine), int(width), int(height))


__all__ = ["decode_groups", "encode_groups", "latent_array"]
