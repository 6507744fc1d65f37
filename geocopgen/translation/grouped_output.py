"""A COP-GEN translation's outputs: one mosaic per generated resolution group, each on its native
grid, into files or memory, and the georeferenced arrays built from the plan.

One output path names one file when a single group is generated (a DEM, S1, land cover); an S2
modality's three groups go to ``<stem>_10m<suffix>``, ``<stem>_20m...`` and ``<stem>_60m...``
beside it, since one GeoTIFF holds one grid. Resampled onto one grid (``grid="input"``), the
groups are one array and one file again, in the registry's band order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from rasterio.enums import Resampling

from geocopgen.copgen.layout import modality_of_slot, slot
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.units import CATEGORIES
from geocopgen.domain import TAG as DOMAIN_TAG
from geocopgen.io.array import band_array
from geocopgen.modalities import MODALITIES, get_modality
from geocopgen.options import TranslateOptions, WriteOptions
from geocopgen.raster.chips import ChipGrid
from geocopgen.raster.grid import GeoBox, pixel_size
from geocopgen.raster.mosaic import GDAL_CACHE_MB, MosaicWriter
from geocopgen.translation.grouped import GroupedPlan, plan_grouped, run_grouped
from geocopgen.translation.output import mosaic_data, mosaic_source, stand_in_arrays
from geocopgen.translation.plan import reduced_bands

UNITS = {"S2": "reflectance", "S1": "dB", "DEM": "m"}


def group_paths(path: Path | None, targets: tuple[str, ...]) -> dict[str, Path | None]:
    """Where each generated slot goes: ``path`` itself for one slot, else one file per group
    named by its resolution."""
    if path is None or len(targets) == 1:
        return dict.fromkeys(targets, path)
    return {k: path.with_name(f"{path.stem}_{slot(k).resolution:g}m{path.suffix}") for k in targets}


#: What fills the generated slots' sinks: ``run(model, plan, sinks)`` → codec-limit counts per
#: slot (:func:`run_grouped`: encode, denoise, decode; ``geocopgen.api.decode``: decode only).
GroupRun = Callable[[CopgenModel, GroupedPlan, Mapping[str, Any]], dict[str, dict[str, int]]]


def run_grouped_into(
    model: CopgenModel,
    plan: GroupedPlan,
    writing: WriteOptions,
    out_grid: GeoBox | None = None,
    run: GroupRun = run_grouped,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """Run ``plan`` into its files (or memory) and return the result: one DataArray, or one per
    generated slot when there are several. ``out_grid`` (the input grid, on request) takes every
    group there (bilinear onto a finer grid, average onto a coarser one, nearest for classes),
    as one array (and one file) in the registry's band order."""
    if out_grid is not None and len(plan.targets) > 1:
        return _merged(model, plan, writing, out_grid, run)
    arrays = _run_groups(model, plan, writing, out_grid, run)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _run_groups(
    model: CopgenModel,
    plan: GroupedPlan,
    writing: WriteOptions,
    out_grid: GeoBox | None,
    run: GroupRun = run_grouped,
) -> dict[str, xr.DataArray]:
    """One mosaic (file or memory) per generated slot; their arrays by slot key."""
    paths = group_paths(writing.path, plan.targets)
    if len(paths) > 1:  # one file per group, not the path the run was checked for
        writing.prepare([c.source for c in plan.conditions.values()], files=paths.values())
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20), contextlib.ExitStack() as stack:
        writers = {
            k: stack.enter_context(_writer(plan, k, paths[k], writing, out_grid))
            for k in plan.targets
        }
        counts = run(model, plan, writers)
        for k, writer in writers.items():
            writer.update_tags(**{f"LIMIT_{name}": n for name, n in counts[k].items()})
    return {k: _array(plan, k, writers[k]) for k in plan.targets}


def _merged(
    model: CopgenModel,
    plan: GroupedPlan,
    writing: WriteOptions,
    out_grid: GeoBox,
    run: GroupRun = run_grouped,
) -> xr.DataArray:
    """Every generated group resampled onto ``out_grid``, stacked in the registry's band order
    (reduced over samples as the groups are: then the ``_std`` bands, or sample by sample), in
    memory or written atomically as one GeoTIFF."""
    parts = _run_groups(model, plan, replace(writing, path=None, cog=False), out_grid, run)
    modality = MODALITIES[modality_of_slot(plan.targets[0])]
    arrays = {str(b): a for a in parts.values() for b in a.band.values}
    generated = {b for k in plan.targets for b in plan.output_bands(k)}
    bands = [b for b in modality.band_names if b in generated]
    names = reduced_bands(bands, plan.options.samples, plan.options.reduce)[0]
    data = np.stack([_onto(arrays[n].sel(band=n), out_grid) for n in names])
    limits: dict[str, int] = {}
    for a in parts.values():  # each group's codec-limit and clipped counts, summed
        for k, v in a.attrs.items():
            if k.startswith("limit_") or k == DOMAIN_TAG.lower():
                limits[k.upper()] = limits.get(k.upper(), 0) + int(v)
    tags = {**plan.tags, **limits, "SLOT": ", ".join(plan.targets)}
    whole = plan.options.samples == 1 and tuple(names) == modality.band_names
    attrs = {str(k).lower(): str(v) for k, v in tags.items()}
    attrs.update(modality=modality.name, units=_units(plan.targets[0]))
    resampled = [f"{k}: {a.attrs['resampled_to']}" for k, a in parts.items()
                 if "resampled_to" in a.attrs]  # fmt: skip
    if resampled:  # each group's own resampling, one line per group
        tags["RESAMPLED_TO"] = attrs["resampled_to"] = "; ".join(resampled)
    if writing.path is None:
        attrs.update(source="memory")
        return band_array(data, out_grid, names, name=modality.name, attrs=attrs)
    chips = ChipGrid.from_grid(out_grid, chip_size=256, overlap=0)
    with MosaicWriter(writing.path, out_grid, names, chips=chips,
                      modality=modality.name if whole else None,
                      units=None if whole else _units(plan.targets[0]), tags=tags,
                      cog=writing.cog, overwrite=writing.overwrite) as writer:  # fmt: skip
        for chip in chips:
            writer.add(chip, data[(slice(None), *chip.slices)])
    attrs.update(source=mosaic_source(writer))
    return band_array(mosaic_data(writer), out_grid, names, name=modality.name, attrs=attrs)


def _onto(band: xr.DataArray, grid: GeoBox) -> np.ndarray:
    """One band already resampled onto ``grid`` (the slot writers did it), as an array."""
    values = np.asarray(band.values, dtype=np.float32)
    if values.shape != (grid.height, grid.width):
        raise AssertionError(f"a resampled group has shape {values.shape}, not {grid.shape}")
    return values


def _writer(
    plan: GroupedPlan, key: str, path: Path | None, writing: WriteOptions, out_grid: GeoBox | None
) -> MosaicWriter:
    canvas, bands = plan.layout.canvases[key], plan.output_bands(key)
    registry = MODALITIES.get(modality_of_slot(key))
    whole = (
        registry is not None and tuple(bands) == registry.band_names and plan.options.samples == 1
    )
    return MosaicWriter(
        path,
        canvas.grid,
        _band_names(plan, key),
        chips=canvas.pixel_chips,
        modality=registry.name if whole else None,
        units=None if whole else _units(key),
        tags={**plan.tags, "SLOT": key, "MODALITY_OF_SLOT": modality_of_slot(key)},
        cog=writing.cog,
        overwrite=writing.overwrite,
        categories=CATEGORIES.get(key),
        out_grid=None if out_grid == canvas.grid else out_grid,
        out_resampling=_resampling(canvas.grid, out_grid) if key not in CATEGORIES else None,
    )


def _resampling(grid: GeoBox, out_grid: GeoBox | None) -> Resampling | None:
    """Bilinear onto a finer grid (a 30 m DEM on a 10 m input), average onto a coarser one."""
    if out_grid is None:
        return None
    finer = pixel_size(out_grid)[0] < pixel_size(grid)[0]
    return Resampling.bilinear if finer else Resampling.average


def _band_names(plan: GroupedPlan, key: str) -> list[str]:
    bands = list(plan.output_bands(key))
    if key in CATEGORIES:
        return bands
    return reduced_bands(bands, plan.options.samples, plan.options.reduce)[0]


def _units(key: str) -> str:
    if key in CATEGORIES:
        return "class"
    return next(u for prefix, u in UNITS.items() if key.startswith(prefix))


def _array(plan: GroupedPlan, key: str, writer: MosaicWriter) -> xr.DataArray:
    attrs = {str(k).lower(): str(v) for k, v in writer.tags.items()}
    attrs.update(
        modality=modality_of_slot(key), slot=key, units=_units(key), source=mosaic_source(writer)
    )
    categories = CATEGORIES.get(key)
    nodata = float("nan") if categories is None else categories.nodata
    grid = writer.out_grid
    return band_array(
        mosaic_data(writer), grid, _band_names(plan, key), name=key, attrs=attrs, nodata=nodata
    )


def translate_arrays_copgen(
    model: CopgenModel,
    conditions: Mapping[str, np.ndarray],
    target: str,
    *,
    num_samples: int = 1,
    seed: int = 0,
    num_inference_steps: int | None = None,
    progress: bool = False,
    precision: str = "auto",
    **_: object,
) -> np.ndarray:
    """The evaluation's translator for a COP-GEN model: ``num_samples`` translations
    ``(N, C, H, W)`` of co-registered ``(C, H, W)`` arrays, in the target's registry band order,
    on the arrays' own 10 m grid (every group resampled there).

    The arrays carry no georeference, so they are placed on the same stand-in grid as
    :func:`geocopgen.translation.translate_arrays` (EPSG:3857 at the origin): the lat/lon token
    says (0, 0) and no date is known, which a model that leaves absent slots out accepts.
    Sample ``i`` is one run with seed ``seed + i``.
    """
    grid, arrays = stand_in_arrays(conditions)
    bands = get_modality(target).band_names
    out = []
    for i in range(num_samples):
        options = TranslateOptions(
            steps=num_inference_steps, seed=seed + i, progress=progress, precision=precision
        )
        plan = plan_grouped(model, target, grid, arrays, options)
        result = run_grouped_into(model, plan, WriteOptions(), out_grid=grid)  # one array
        out.append(result.sel(band=list(bands)).values)
    return np.stack(out).astype(np.float32)
