"""Named, rooted errors and warnings.

Every error is a :class:`GeoCopGenError` so the CLI can turn it into a one-line message and a
non-zero exit code, and each also inherits the matching builtin (``ValueError``, ``OSError``)
so plain ``except ValueError`` code keeps working. Messages name the offending file or value and
say what to do about it.
"""

from __future__ import annotations

import os
import sys
import warnings


class GeoCopGenError(Exception):
    """Root of every error geocopgen raises on purpose."""


# --- input data -----------------------------------------------------------------------------
class InputError(GeoCopGenError, ValueError):
    """An input raster cannot be used as it is."""


class UnreadableInputError(GeoCopGenError, OSError):
    """A file is missing, truncated or not a raster GDAL can read."""


class MissingCRSError(InputError):
    """The raster has no coordinate reference system."""


class TransformError(InputError):
    """The geotransform is rotated, sheared or missing."""


class NoValidDataError(InputError):
    """Every pixel is nodata (or NaN) in the region asked for."""


class NaNInputError(InputError):
    """NaNs where no nodata value declares them."""


# --- modalities -----------------------------------------------------------------------------
class ModalityError(GeoCopGenError, ValueError):
    """Something about a modality is wrong."""


class UnknownModalityError(ModalityError):
    """The modality is not one geocopgen (or the loaded model) knows."""


class BandMismatchError(ModalityError):
    """The band count or band names do not fit the stated modality."""


# --- grids ----------------------------------------------------------------------------------
class GridError(GeoCopGenError, ValueError):
    """Rasters do not share, or cannot be put on, one grid."""


class NoOverlapError(GridError):
    """Condition rasters do not overlap each other or the target grid."""


# --- outputs, sources, models ---------------------------------------------------------------
class OutputError(GeoCopGenError, OSError):
    """An output cannot be written where it was asked for."""


class OutputExistsError(OutputError):
    """The output exists and replacing it was not asked for.

    The message names the switch of the surface in use: ``overwrite=True`` from Python, and
    ``--overwrite`` when the CLI reports it (:meth:`message_for`).
    """

    def __init__(self, path: object, switch: str = "overwrite=True") -> None:
        self.path = str(path)
        super().__init__(self.message_for(switch))

    def message_for(self, switch: str) -> str:
        return f"{self.path} exists; pass {switch} to replace it, or choose another output."

    def __reduce__(self) -> tuple[type, tuple[str]]:  # pickles (dask, multiprocessing) intact
        return (type(self), (self.path,))


class DataSourceError(GeoCopGenError, OSError):
    """A STAC API, Major TOM index or latent store did not give usable data."""


class CheckpointError(GeoCopGenError, OSError):
    """Weights or configs do not fit the model they are loaded into."""


class ConfigError(GeoCopGenError, ValueError):
    """A configuration file or value is wrong (unknown key, incompatible resume)."""


# --- warnings -------------------------------------------------------------------------------
class GeoCopGenWarning(UserWarning):
    """Root of geocopgen's warnings."""


class ResamplingWarning(GeoCopGenWarning):
    """Data was resampled or reprojected to fit a grid."""


class OffsetWarning(GeoCopGenWarning):
    """The Sentinel-2 radiometric offset could not be decided from metadata."""


def warn(message: str, category: type[Warning] = GeoCopGenWarning) -> None:
    """``warnings.warn`` attributed to the line that called into geocopgen: the frame just
    outside the outermost geocopgen frame, however deep the warning is raised and whatever
    library code (``dataclasses.replace``, dask) lies between (``stacklevel=N`` goes wrong as
    soon as a call path changes)."""
    frame, level, outermost = sys._getframe(1), 2, 2
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            outermost = level
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=outermost + 1)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
