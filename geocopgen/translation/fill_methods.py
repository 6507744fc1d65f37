"""Values for the pixels a gap fill fills, in physical units on the input grid, three ways:

* :func:`model_values`: a COP-GEN-layout translation of the input's modality in which the clear
  part of the input is a condition (its wholly clear latent cells are held at every solver call,
  :class:`~geocopgen.translation.grouped.Known`) and the other modalities condition the scene;
* :func:`interpolated`: GDAL's inverse-distance fill of each band from the clear pixels;
* :func:`ridge_filled`: a per-pixel ridge regression from the conditions' bands to each band,
  fitted on the scene's clear pixels.

The last two are the honest baselines a model fill is judged against (pipelines/
evaluate_gap_filling.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from rasterio.fill import fillnodata

from geocopgen.baselines import LinearBaseline
from geocopgen.errors import ConfigError, InputError
from geocopgen.io.align import reproject
from geocopgen.io.readers import OpenedInput
from geocopgen.raster.grid import GeoBox, grid_of, rasterio_crs
from geocopgen.translation.fill_mask import nearest

#: At most this many clear pixels fit the ridge baseline (a regular subsample beyond).
RIDGE_PIXELS = 200_000


def inverse_distance(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """One band's unknown pixels filled by GDAL's inverse-distance interpolation of the
    ``known`` ones (no smoothing, no search limit)."""
    reach = max(values.shape)
    return fillnodata(np.nan_to_num(values).astype(np.float32), mask=known.astype(np.uint8),
                      max_search_distance=reach, smoothing_iterations=0)  # fmt: skip


def interpolated(array: xr.DataArray, fill: np.ndarray) -> np.ndarray:
    """Every band of ``array`` inverse-distance filled from its clear valid pixels:
    ``(bands, H, W)`` physical values."""
    values = np.asarray(array.values, dtype=np.float32)
    known = ~fill & np.isfinite(values).all(0)
    return np.stack([inverse_distance(band, known) for band in values])


def ridge_filled(
    array: xr.DataArray, conditions: Mapping[str, OpenedInput], fill: np.ndarray
) -> np.ndarray:
    """Each band of ``array`` predicted per pixel from the conditions' bands by a ridge
    regression fitted on the scene's clear pixels
    (:class:`~geocopgen.baselines.LinearBaseline`): ``(bands, H, W)``, NaN where a
    condition has no data."""
    if not conditions:
        raise ConfigError("method='ridge' predicts from other modalities; give --cond s1rtc=...")
    grid = grid_of(array)
    x = np.concatenate(
        [np.asarray(reproject(c, grid, warn=False).values, np.float32) for c in conditions.values()]
    )
    y = np.asarray(array.values, dtype=np.float32)
    train = ~fill & np.isfinite(y).all(0) & np.isfinite(x).all(0)
    if train.sum() <= x.shape[0]:
        raise InputError(
            f"{array.attrs.get('source', 'the input')}: too few clear pixels where the "
            "conditions have data to fit the ridge baseline"
        )
    rows = np.flatnonzero(train.ravel())[:: max(1, int(train.sum()) // RIDGE_PIXELS)]
    flat_x, flat_y = x.reshape(len(x), -1)[:, rows], y.reshape(len(y), -1)[:, rows]
    fitted = LinearBaseline().fit([flat_x[:, :, None]], [flat_y[:, :, None]])
    return fitted.predict(x).astype(np.float32)


@dataclass(frozen=True)
class ModelFill:
    """The model's values for a fill on the input grid: the mean (``(bands, H, W)``), the
    standard deviation over samples (``None`` for one sample) and the translation's tags."""

    mean: xr.DataArray
    std: xr.DataArray | None
    tags: Mapping[str, Any]


def model_values(
    model: Any,
    opened: OpenedInput,
    conditions: Mapping[str, OpenedInput],
    not_kept: np.ndarray,
    sampling: Any,
    *,
    when: Any = None,
    dn_policy: str = "model",
    path: Path | None = None,
    tags: Mapping[str, Any] | None = None,
) -> ModelFill:
    """Translate the input's modality with its clear cells held (``not_kept`` on its grid: the
    pixels to fill and the invalid ones), conditioned on ``conditions``, onto its grid; into
    ``path`` (a temporary GeoTIFF, read back lazily) or memory."""
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.io.align import model_grid
    from geocopgen.options import WriteOptions
    from geocopgen.translation.grouped import Keep, plan_grouped
    from geocopgen.translation.grouped_output import run_grouped_into

    if not isinstance(model, CopgenModel):
        raise ConfigError(
            "gap filling with method='model' needs a COP-GEN-layout model (the bundled model or "
            "a converted COP-GEN); use method='interpolate' or 'ridge' with this one"
        )
    array = opened.array
    place = grid_of(array)
    scene = model_grid(place, None)
    keep = Keep(opened, not_kept if scene == place else _onto(not_kept, place, scene))
    plan = plan_grouped(model, array.attrs["modality"], scene, conditions, sampling, when=when,
                        dn_policy=dn_policy, tags=tags, keep=keep)  # fmt: skip
    writing = WriteOptions(path=path, overwrite=path is not None)  # our own temporary file
    projected = rasterio_crs(place) == rasterio_crs(scene)
    result = run_grouped_into(model, plan, writing, out_grid=place if projected else scene)
    if not projected:  # a geographic input: the model works in UTM, the fill is on its grid
        result = reproject(result, place, resampling="bilinear", warn=False)
    bands = [str(b) for b in array.band.values]
    std = None
    if sampling.samples > 1:
        std = result.sel(band=[f"{b}_std" for b in bands])
    return ModelFill(result.sel(band=bands), std, plan.tags)


def _onto(mask: np.ndarray, grid: GeoBox, target: GeoBox) -> np.ndarray:
    """A pixel mask moved onto another grid (nearest neighbour)."""
    moved = nearest(mask.astype(np.uint8), grid.affine, rasterio_crs(grid), target)
    return moved.astype(bool)


__all__ = [
    "RIDGE_PIXELS",
    "ModelFill",
    "interpolated",
    "inverse_distance",
    "model_values",
    "ridge_filled",
]
