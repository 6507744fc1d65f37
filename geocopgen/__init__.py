"""geocopgen: COP-GEN-Beta generative modality translation for georeferenced Copernicus rasters."""

from geocopgen.errors import GeoCopGenError
from geocopgen.modalities import MODALITIES, Modality, get_modality

__version__ = "0.1.0.dev0"

__all__ = ["MODALITIES", "GeoCopGenError", "Modality", "__version__", "get_modality"]
