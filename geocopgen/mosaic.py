"""Deprecated path of the streaming mosaic writer, which lives in :mod:`geocopgen.raster.mosaic`.

This stub forwards to it for one release.
"""

from geocopgen._compat import moved

__getattr__, __dir__ = moved(__name__, "geocopgen.raster.mosaic")
