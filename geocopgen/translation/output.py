"""Run a planned translation into one of two sinks of the same mosaic: a GeoTIFF, or memory.

The writer is opened *before* any model work, so an unwritable output fails in a second, not
after an hour of denoising; leaving the ``with`` block by an exception (Ctrl-C included) removes
the temporary file, so no half-written output ever appears. Without an output path the finished
tiles go into an array and the result is built from the plan: nothing is written or read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geocopgen.io.array import DEFAULT_CHUNK, band_array, modality_array
from geocopgen.io.readers import OpenedInput
from geocopgen.modalities import get_modality
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.options import TranslateOptions, WriteOptions
from geocopgen.raster.grid import GeoBox
from geocopgen.raster.mosaic import GDAL_CACHE_MB, MosaicWriter
from geocopgen.translation.plan import TranslationPlan
from geocopgen.translation.translator import CanvasTranslator, TranslateStats


def run_plan(
    translator: CanvasTranslator, plan: TranslationPlan, writing: WriteOptions
) -> tuple[TranslateStats, MosaicWriter]:
    """Translate ``plan`` into ``writing.path`` (or into memory when it is ``None``)."""
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20),
        MosaicWriter(
            writing.path,
            plan.grid,
            plan.bands,
            chips=plan.layout.pixel_chips,
            # the MODALITY tag promises the modality's own band set, which extra bands break
            modality=plan.target if plan.single else None,
            units=None if plan.single else plan.units,
            descriptions=plan.descriptions,
            tags=plan.tags,
            out_grid=plan.out_grid,
            cog=writing.cog,
            overwrite=writing.overwrite,
        ) as writer,
    ):
        stats = translator.run(plan, writer)
        stats.domain.report(writer)  # the count of clipped values, as a tag and a warning
    return stats, writer


def result_array(plan: TranslationPlan, writer: MosaicWriter) -> xr.DataArray:
    """The result as a georeferenced DataArray built from the plan: in memory, or reading the
    written file lazily (without detecting what geocopgen itself just wrote)."""
    grid = plan.output_grid
    modality = get_modality(plan.target)
    attrs = {k.lower(): v for k, v in writer.tags.items()}  # the plan's, and counts added
    if plan.single:
        return mosaic_array(writer, grid, plan.target, attrs)
    attrs.update(modality=modality.name, units=modality.units, source=mosaic_source(writer))
    name = f"{modality.name}_{plan.options.reduce}"
    return band_array(mosaic_data(writer), grid, plan.bands, name=name, attrs=attrs)


def mosaic_array(
    writer: MosaicWriter, grid: GeoBox, modality: str, attrs: Mapping[str, Any]
) -> xr.DataArray:
    """A closed writer's mosaic of one modality's bands as a ModalityArray on ``grid``."""
    m = get_modality(modality)
    return modality_array(mosaic_data(writer), grid, m, source=mosaic_source(writer), **attrs)


def mosaic_data(writer: MosaicWriter) -> Any:
    """The mosaic's pixels: the in-memory array, or a lazy read of the written file."""
    if writer.path is None:
        return writer.result
    chunks = {"band": -1, "y": DEFAULT_CHUNK, "x": DEFAULT_CHUNK}  # rioxarray deprecates tuples
    return rioxarray.open_rasterio(writer.path, chunks=chunks, mask_and_scale=False).data


def mosaic_source(writer: MosaicWriter) -> str:
    return str(writer.path) if writer.path is not None else "memory"


def translate_to_file(
    translator: CanvasTranslator,
    grid: GeoBox,
    conditions: Mapping[str, xr.DataArray | OpenedInput],
    path: str | Path,
    *,
    out_grid: GeoBox | None = None,
    cog: bool = False,
    tags: Mapping[str, Any] | None = None,
    model: str = "",
    overwrite: bool = False,
) -> TranslateStats:
    """Translate on ``grid`` and stream the result to ``path`` (on ``out_grid`` if given: e.g.
    the modality's native 30 m DEM grid, or the input's own grid; aggregated with ``average``)."""
    plan = translator.plan(grid, conditions, out_grid=out_grid, model=model, tags=tags)
    writing = WriteOptions(path=Path(path), cog=cog, overwrite=overwrite)
    writing.prepare([OpenedInput.of(c).source for c in conditions.values()])  # before the run
    return run_plan(translator, plan, writing)[0]


# --- arrays in, arrays out (evaluation) -------------------------------------------------------
def stand_in_arrays(
    conditions: Mapping[str, np.ndarray],
) -> tuple[GeoBox, dict[str, OpenedInput]]:
    """Bare co-registered ``(C, H, W)`` arrays as inputs (no files) on a stand-in 10 m grid
    (EPSG:3857, origin at the CRS origin, so seeding is by pixel position): what the
    evaluation's translators give a model that needs a grid."""
    shapes = {name: np.shape(a)[1:] for name, a in conditions.items()}
    (height, width), *_ = shapes.values() if shapes else [(0, 0)]
    grid = GeoBox((height, width), Affine(10.0, 0, 0, 0, -10.0, 0), CRS.from_epsg(3857))
    arrays = {
        get_modality(name).name: OpenedInput(
            modality_array(
                np.asarray(a, dtype=np.float32), grid, get_modality(name), source=f"{name} array"
            )
        )
        for name, a in conditions.items()
    }
    return grid, arrays


def translate_arrays(
    pipeline: CopGenPipeline,
    conditions: Mapping[str, np.ndarray],
    target: str,
    *,
    num_samples: int = 1,
    seed: int = 0,
    num_inference_steps: int | None = None,
    chip_size: int | None = None,
    overlap: int | None = None,
    progress: bool = False,
    precision: str = "auto",
) -> np.ndarray:
    """``num_samples`` seamless translations ``(N, C, H, W)`` of co-registered condition arrays
    ``(C, H, W)`` (physical units, NaN invalid), of any size.

    The evaluation's translator interface: the arrays are put on a 10 m grid (EPSG:3857, origin
    at the CRS origin, so seeding is by pixel position) and translated in memory by the seamless
    translator. ``chip_size`` is accepted for interface compatibility; the model's own chip size
    is used.
    """
    grid, arrays = stand_in_arrays(conditions)
    height, width = grid.height, grid.width
    options = TranslateOptions(
        steps=num_inference_steps,
        samples=num_samples,
        seed=seed,
        overlap=overlap,
        reduce="samples",
        progress=progress,
        precision=precision,
    )
    translator = CanvasTranslator(pipeline, target, options)
    plan = translator.plan(grid, arrays)
    _, writer = run_plan(translator, plan, WriteOptions())
    bands = get_modality(translator.target).n_bands
    return writer.result.reshape(num_samples, bands, height, width)
