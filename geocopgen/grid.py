"""Deprecated path of the Major TOM grid, which lives in :mod:`geocopgen.sources.majortom_grid`.

This stub forwards to it for one release.
"""

from geocopgen._compat import moved

__getattr__, __dir__ = moved(__name__, "geocopgen.sources.majortom_grid")
