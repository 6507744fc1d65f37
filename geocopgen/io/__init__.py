"""Open inputs as ModalityArrays and put them on one grid.

* :func:`open_raster`: a GeoTIFF, a one-file-per-band folder (Major TOM, SAFE-like) or an xarray
  object → lazy ModalityArray (float32 physical units, NaN = invalid, rioxarray georeference).
* :func:`plan_input`: what an input is detected as, without reading it (``geocopgen info``).
* :func:`align` / :func:`reproject` / :func:`model_grid` / :func:`utm_grid`: one grid for all.
"""

from geocopgen.io.align import align, grid_of, model_grid, reproject, utm_grid
from geocopgen.io.codecs import Codec
from geocopgen.io.detect import Detection, detect_modality
from geocopgen.io.readers import InputPlan, modality_array, open_raster, plan_input

__all__ = [
    "Codec",
    "Detection",
    "InputPlan",
    "align",
    "detect_modality",
    "grid_of",
    "modality_array",
    "model_grid",
    "open_raster",
    "plan_input",
    "reproject",
    "utm_grid",
]
