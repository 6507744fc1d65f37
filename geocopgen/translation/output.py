"""Run a :class:`~geocopgen.translation.translator.CanvasTranslator` into a GeoTIFF, or into arrays.

The writer is opened *before* any model work, so an unwritable output fails in a second, not
after an hour of denoising; leaving the ``with`` block by an exception (Ctrl-C included) removes
the temporary file, so no half-written output ever appears.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geocopgen.io.codecs import reading_tags
from geocopgen.modalities import get_modality
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.mosaic import GDAL_CACHE_MB, MosaicWriter
from geocopgen.rastergrid import RasterGrid
from geocopgen.translation.translator import CanvasTranslator, TranslateOptions, TranslateStats


def provenance(
    translator: CanvasTranslator,
    conditions: Mapping[str, xr.DataArray],
    model: str,
) -> dict[str, Any]:
    """Tags that say how an output was made (written upper-case into the GeoTIFF)."""
    opts = translator.options
    pipeline = translator.pipeline
    tags: dict[str, Any] = {
        "TARGET_MODALITY": translator.target,
        "CONDITIONS": ", ".join(
            f"{name}={a.attrs.get('source', 'array')}" for name, a in conditions.items()
        )
        or "none (unconditional)",
        "MODEL": model,
        "STEPS": opts.steps or pipeline.num_inference_steps,
        "SCHEDULER": type(pipeline.scheduler).__name__,
        "SEED": opts.seed,
        "SAMPLES": opts.samples,
        "SEAMLESS": "multidiffusion" if opts.seamless else "off (chips denoised independently)",
        "SEED_RULE": "initial noise seeded per 8x8 latent block of the CRS pixel lattice",
    }
    if opts.samples > 1:
        tags["SAMPLE_REDUCTION"] = opts.reduce
    for name, array in conditions.items():
        tags.update(reading_tags(array.attrs, name.upper()))
    return tags


def translate_to_file(
    translator: CanvasTranslator,
    grid: RasterGrid,
    conditions: Mapping[str, xr.DataArray],
    path: str | Path,
    *,
    out_grid: RasterGrid | None = None,
    cog: bool = False,
    tags: Mapping[str, Any] | None = None,
    model: str = "",
    overwrite: bool = False,
) -> TranslateStats:
    """Translate on ``grid`` and stream the result to ``path`` (on ``out_grid`` if given: e.g.
    the modality's native 30 m DEM grid, or the input's own grid; aggregated with ``average``)."""
    layout = translator.layout(grid, conditions)
    bands, descriptions = translator.bands
    # the MODALITY tag promises the modality's own band set, which extra sample bands break
    single = translator.options.samples == 1
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20),
        MosaicWriter(
            path,
            grid,
            bands,
            chips=layout.pixel_chips,
            modality=translator.target if single else None,
            units=None if single else get_modality(translator.target).units,
            descriptions=descriptions,
            tags={
                **provenance(translator, conditions, model),
                "CHIP_SIZE": layout.chip_px,
                "OVERLAP": layout.overlap_px,
                **(tags or {}),
            },
            out_grid=out_grid,
            cog=cog,
            overwrite=overwrite,
        ) as writer,
    ):
        stats = translator.run(grid, conditions, writer)
        stats.domain.report(writer)  # the count of clipped values, as a tag and a warning
        return stats


# --- arrays in, arrays out (evaluation) -------------------------------------------------------
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
) -> np.ndarray:
    """``num_samples`` seamless translations ``(N, C, H, W)`` of co-registered condition arrays
    ``(C, H, W)`` (physical units, NaN invalid), of any size.

    The evaluation's translator interface: the arrays are put on a 10 m grid (EPSG:3857, origin
    at the CRS origin, so seeding is by pixel position), translated by the seamless translator
    and read back. ``chip_size`` is accepted for interface compatibility; the model's own chip
    size is used.
    """
    from geocopgen.io.readers import modality_array

    shapes = {name: np.shape(a)[1:] for name, a in conditions.items()}
    (height, width), *_ = shapes.values() if shapes else [(0, 0)]
    grid = RasterGrid(CRS.from_epsg(3857), Affine(10.0, 0, 0, 0, -10.0, 0), width, height)
    arrays = {
        get_modality(name).name: modality_array(
            np.asarray(a, dtype=np.float32), grid, get_modality(name), source=f"{name} array"
        )
        for name, a in conditions.items()
    }
    options = TranslateOptions(
        steps=num_inference_steps,
        samples=num_samples,
        seed=seed,
        overlap=overlap,
        reduce="samples",
        progress=progress,
    )
    translator = CanvasTranslator(pipeline, target, options)
    with tempfile.TemporaryDirectory(prefix="geocopgen-") as tmp:
        path = Path(tmp) / "translation.tif"
        translate_to_file(translator, grid, arrays, path)
        with rasterio.open(path) as src:
            values = src.read()
    bands = get_modality(translator.target).n_bands
    return values.reshape(num_samples, bands, height, width)
