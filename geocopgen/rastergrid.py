"""Deprecated: a region's grid is odc-geo's ``GeoBox`` now, with geocopgen's rules in
:mod:`geocopgen.raster.grid`. ``RasterGrid(crs, transform, width, height)`` still works for one
release and returns the equivalent GeoBox, with a ``DeprecationWarning``.

Old method → new spelling: ``.res`` → ``pixel_size(g)``, ``.bounds`` → ``g.boundingbox.bbox``,
``.window(w)`` → ``g[rows, cols]`` (``sub_grid(g, w)``), ``.at_resolution(r)`` →
``at_resolution(g, r)``, ``.almost_equals(o)`` → ``almost_equal(g, o)``, ``.xy_coords()`` →
``xy_coords(g)``, ``.to_profile()`` → ``grid_profile(g)``, ``.validate(s)`` →
``validate_grid(g, s)``, ``from_dataset``/``from_xarray`` → ``grid_of``.
"""

from __future__ import annotations

import warnings
from typing import Any

from affine import Affine
from odc.geo.geobox import GeoBox

from geocopgen.raster.grid import grid_of, make_grid


def _deprecated(what: str) -> None:
    warnings.warn(
        f"geocopgen.rastergrid.{what} is deprecated: a grid is an odc.geo GeoBox; see "
        "geocopgen.raster.grid (removed in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )


class _GridType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, GeoBox)


class RasterGrid(metaclass=_GridType):
    """``RasterGrid(crs, transform, width, height)`` → the equivalent ``GeoBox`` (deprecated)."""

    def __new__(cls, crs: Any, transform: Affine, width: int, height: int) -> GeoBox:  # type: ignore[misc]
        _deprecated("RasterGrid")
        return make_grid(crs, transform, width, height)

    @classmethod
    def from_dataset(cls, src: Any, *, source: str | None = None) -> GeoBox:
        _deprecated("RasterGrid.from_dataset")
        return grid_of(src, source=source)

    @classmethod
    def from_xarray(cls, array: Any, *, source: str = "xarray input") -> GeoBox:
        _deprecated("RasterGrid.from_xarray")
        return grid_of(array, source=source)


__all__ = ["RasterGrid"]
