"""Translation of rasters of any size: the latent canvas, MultiDiffusion, streamed decoding.

* :class:`CanvasTranslator` runs one translation (or unconditional generation) on a raster grid;
* :func:`translate_to_file` streams it into a GeoTIFF/COG through the mosaic writer;
* :func:`translate_arrays` is the arrays-in, arrays-out form the evaluation uses.

The user-facing surfaces are :mod:`geocopgen.api`, the ``.copgen`` accessor and the CLI.
"""

from geocopgen.options import TranslateOptions
from geocopgen.translation.canvas import CanvasLayout, positional_noise
from geocopgen.translation.output import result_array, run_plan, translate_arrays, translate_to_file
from geocopgen.translation.plan import TranslationPlan, plan_translation, provenance
from geocopgen.translation.translator import (
    CanvasTranslator,
    TranslateStats,
    decode_canvas,
    denoise_canvas,
    encode_canvas,
    layout_for,
    output_bands,
)

__all__ = [
    "CanvasLayout",
    "CanvasTranslator",
    "TranslateOptions",
    "TranslateStats",
    "TranslationPlan",
    "decode_canvas",
    "denoise_canvas",
    "encode_canvas",
    "layout_for",
    "output_bands",
    "plan_translation",
    "positional_noise",
    "provenance",
    "result_array",
    "run_plan",
    "translate_arrays",
    "translate_to_file",
]
