"""Deprecated path of the chip grid, which lives in :mod:`geocopgen.raster.chips`.

This stub forwards to it for one release.
"""

from geocopgen._compat import moved

__getattr__, __dir__ = moved(__name__, "geocopgen.raster.chips")
