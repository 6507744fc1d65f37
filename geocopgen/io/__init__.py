"""Open inputs as ModalityArrays and put them on one grid.

* :func:`open_raster`: a GeoTIFF, a one-file-per-band folder (Major TOM, SAFE-like) or an xarray
  object → lazy ModalityArray (float32 physical units, NaN = invalid, rioxarray georeference).
* :func:`open_input`: the same, opened once as an :class:`OpenedInput` (the array and the files
  behind it), the value translation hands on to the readers.
* :func:`plan_input`: what an input is detected as, without reading it (``geocopgen info``).
* :func:`plan_bands`: the same plan for band files a source describes (Major TOM), opened by
  path or from GeoTIFF bytes (:class:`MemoryBands`), without reading a header.
* :func:`align` / :func:`reproject` / :func:`model_grid` / :func:`utm_grid`: one grid for all.
* :func:`grid_of`: an input's grid, an odc-geo ``GeoBox`` (the rules: :mod:`geocopgen.raster.grid`).

``align`` stays here rather than in :mod:`geocopgen.raster`: it works on ModalityArrays and
builds them (:mod:`geocopgen.io.array`), so the raster engine's grid layer does not depend on io.
"""

from geocopgen.io.align import align, model_grid, reproject, utm_grid
from geocopgen.io.decoding import Decoding
from geocopgen.io.detect import Detection, detect_modality
from geocopgen.io.raster_source import MemoryBands, RasterSource
from geocopgen.io.readers import (
    InputPlan,
    OpenedInput,
    modality_array,
    open_input,
    open_raster,
    plan_bands,
    plan_input,
)
from geocopgen.raster.grid import grid_of

__all__ = [
    "Decoding",
    "Detection",
    "InputPlan",
    "MemoryBands",
    "OpenedInput",
    "RasterSource",
    "align",
    "detect_modality",
    "grid_of",
    "modality_array",
    "model_grid",
    "open_input",
    "open_raster",
    "plan_bands",
    "plan_input",
    "reproject",
    "utm_grid",
]
