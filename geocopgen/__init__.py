"""geocopgen: COP-GEN-Beta generative modality translation for georeferenced Copernicus rasters.

``geocopgen.translate``, ``geocopgen.generate`` and ``geocopgen.load_model`` are the Python API
(:mod:`geocopgen.api`, imported on first use because it pulls in torch); importing geocopgen
registers the ``.copgen`` accessor on xarray objects.
"""

from typing import Any

from geocopgen import accessor as _accessor  # noqa: F401  (registers .copgen)
from geocopgen._version import __version__
from geocopgen.errors import GeoCopGenError
from geocopgen.modalities import MODALITIES, Modality, get_modality

_API = ("translate", "generate", "load_model", "encode", "decode")

__all__ = [
    "MODALITIES",
    "GeoCopGenError",
    "Modality",
    "__version__",
    "decode",
    "encode",
    "generate",
    "get_modality",
    "load_model",
    "translate",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from geocopgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'geocopgen' has no attribute {name!r}")
