"""geocopgen: COP-GEN-Beta generative modality translation for georeferenced Copernicus rasters.

``geocopgen.translate``, ``generate``, ``fill``, ``encode``, ``decode``, ``load_model`` and
``capabilities`` are the Python API (:mod:`geocopgen.api`, imported on first use because it pulls
in torch); ``geocopgen.open_raster`` reads an input as the model sees it (:mod:`geocopgen.io`).
Everything the README and the guides call is importable from here. Importing geocopgen registers
the ``.copgen`` accessor on xarray objects.
"""

from typing import Any

from geocopgen import accessor as _accessor  # noqa: F401  (registers .copgen)
from geocopgen._version import __version__
from geocopgen.errors import GeoCopGenError
from geocopgen.modalities import MODALITIES, Modality, get_modality

_API = ("translate", "generate", "fill", "load_model", "encode", "decode", "capabilities")
_IO = ("open_raster",)

__all__ = [
    "MODALITIES",
    "GeoCopGenError",
    "Modality",
    "__version__",
    "capabilities",
    "decode",
    "encode",
    "fill",
    "generate",
    "get_modality",
    "load_model",
    "open_raster",
    "translate",
    "translate_many",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from geocopgen import api

        return getattr(api, name)
    if name == "translate_many":  # dask.distributed loads with it, not with geocopgen
        from geocopgen.many import translate_many

        return translate_many
    if name in _IO:
        from geocopgen import io

        return getattr(io, name)
    raise AttributeError(f"module 'geocopgen' has no attribute {name!r}")
