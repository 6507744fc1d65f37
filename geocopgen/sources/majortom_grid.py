"""The Major TOM grid: about 10 km cells on the sphere, named like ``433U_1171R``.

This follows the official definition (ESA-PhiLab/Major-TOM ``majortom/grid.py``) to the float:

* rows: ``n = ceil(pi * 6378.137 / dist)`` latitudes ``sort(mod(linspace(-90, 90, n + 1)[:-1],
  180) - 90)``; the row whose *bottom* edge is the equator is ``0U``, northwards ``1U, 2U, ...``,
  southwards ``1D, 2D, ...``; only rows whose bottom latitude lies in ``[-85, 85]`` exist;
* columns of a row: ``m = ceil(2 * pi * 6378.137 * cos(lat_bottom) / dist)`` longitudes built
  the same way; the column whose left edge is the Greenwich meridian is ``0R``, eastwards
  ``1R, 2R, ...``, westwards ``1L, 2L, ...``;
* a grid point is the cell's **bottom-left** corner; a point belongs to the cell whose corner is
  the last grid point strictly below and strictly left of it (``searchsorted(..) - 1``), so a
  point exactly on a grid line belongs to the cell below or to the left;
* the cell's UTM zone is the zone of its bottom-left corner (Norway and Svalbard exceptions);
* Major TOM products are the 10 km cell plus a 340 m margin on every side, cut in the UTM CRS
  of the Sentinel product the cell was taken from: 1068 x 1068 px at 10 m
  (:func:`product_grid`, a GeoBox; :func:`product_transform` gives its loose fields).

The integer forms are those of the Major TOM metadata: ``grid_row_u`` (+N for ``NU``, -N for
``ND``) and ``grid_col_r`` (+N for ``NR``, -N for ``NL``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from geocopgen.errors import GridError

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry import Polygon
    from shapely.geometry.base import BaseGeometry

RADIUS_EQUATOR_KM = 6378.137
#: Side of a Major TOM product in metres: the 10 km cell plus 340 m of margin on each side.
PRODUCT_SIZE_M = 10680.0
PRODUCT_MARGIN_M = 340.0

_CELL_RE = re.compile(r"^\s*(\d+)([UD])_(\d+)([RL])\s*$", re.IGNORECASE)
_TILE_RE = re.compile(r"^(\d+[UD]_\d+[RL])(?:_(\d+)_(\d+))?$", re.IGNORECASE)
#: TerraMesh/TerraMind sub-tiles: 224 px tiles at the top-left of a 4 x 4 grid of 264 px blocks.
SUBTILE_BLOCK_PX = 264
SUBTILE_SIZE_PX = 224
BBox = tuple[float, float, float, float]


@dataclass(frozen=True, order=True)
class Cell:
    """One grid cell, by its integer row (``grid_row_u``) and column (``grid_col_r``)."""

    row: int
    col: int

    @property
    def name(self) -> str:
        return cell_name(self.row, self.col)

    def __str__(self) -> str:
        return self.name


def cell_name(row: int, col: int) -> str:
    """Integer row/column → ``'433U_1171R'``."""
    r = f"{row}U" if row >= 0 else f"{-row}D"
    c = f"{col}R" if col >= 0 else f"{-col}L"
    return f"{r}_{c}"


def parse_cell(value: str | Cell | tuple[int, int]) -> Cell:
    """``'433U_1171R'`` (or a :class:`Cell`, or ``(row, col)``) → :class:`Cell`.

    Only the syntax is checked here; :meth:`MajorTOMGrid.check` also checks that the cell exists.
    ``0D`` and ``0L`` are refused: the official names never use them (row 0 is ``0U``).
    """
    if isinstance(value, Cell):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Cell(int(value[0]), int(value[1]))
    m = _CELL_RE.match(str(value))
    if (
        not m
        or (m.group(2).upper() == "D" and int(m.group(1)) == 0)
        or (m.group(4).upper() == "L" and int(m.group(3)) == 0)
    ):
        raise GridError(
            f"{value!r} is not a Major TOM cell id; ids look like '433U_1171R' "
            "(row number + U/D, underscore, column number + R/L; 0D and 0L are written 0U, 0R)"
        )
    row = int(m.group(1)) * (1 if m.group(2).upper() == "U" else -1)
    col = int(m.group(3)) * (1 if m.group(4).upper() == "R" else -1)
    return Cell(row, col)


def cell_to_ints(value: str | Cell) -> tuple[int, int]:
    """``'922D_249L'`` → ``(-922, -249)`` (the metadata's ``grid_row_u``, ``grid_col_r``)."""
    cell = parse_cell(value)
    return cell.row, cell.col


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the UTM zone of a point, with the Norway (32V) and Svalbard exceptions."""
    zone = (math.floor((lon + 180) / 6)) % 60 + 1
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    elif 72.0 <= lat < 84.0:
        for lo, hi, z in ((0.0, 9.0, 31), (9.0, 21.0, 33), (21.0, 33.0, 35), (33.0, 42.0, 37)):
            if lo <= lon < hi:
                zone = z
    return (32700 if lat < 0 else 32600) + zone


class MajorTOMGrid:
    """The Major TOM grid for a cell size ``dist_km`` (10 km for every Core dataset)."""

    def __init__(
        self, dist_km: float = 10.0, latitude_range: tuple[float, float] = (-85.0, 85.0)
    ) -> None:
        self.dist_km = float(dist_km)
        self.latitude_range = latitude_range
        n = math.ceil(math.pi * RADIUS_EQUATOR_KM / self.dist_km)
        lats = np.sort(np.mod(np.linspace(-90, 90, n + 1)[:-1], 180) - 90)
        self._zeroth_row = int(np.searchsorted(lats, 0))
        keep = (lats >= latitude_range[0]) & (lats <= latitude_range[1])
        self._first = int(np.argmax(keep))  # index (in the full list) of the first kept row
        #: Bottom latitudes of the rows that exist, south to north.
        self.lats: np.ndarray = lats[keep]
        self._lat_step = float(lats[1] - lats[0])

    # --- rows and columns ---------------------------------------------------------------
    @property
    def row_min(self) -> int:
        return self._first - self._zeroth_row

    @property
    def row_max(self) -> int:
        return self.row_min + len(self.lats) - 1

    def _row_pos(self, row: int) -> int:
        return row - self.row_min

    def row_lat(self, row: int) -> float:
        """Bottom latitude of a row."""
        self._check_row(row)
        return float(self.lats[self._row_pos(row)])

    def row_top(self, row: int) -> float:
        """Top latitude of a row (the next row's bottom; the top row uses the last step)."""
        pos = self._row_pos(row)
        if pos + 1 < len(self.lats):
            return float(self.lats[pos + 1])
        return float(self.lats[pos] + (self.lats[pos] - self.lats[pos - 1]))

    def row_lons(self, row: int) -> tuple[np.ndarray, int]:
        """Left longitudes of the columns of a row, west to east, and the index of ``0R``."""
        self._check_row(row)
        return _row_longitudes(self.row_lat(row), self.dist_km)

    def col_range(self, row: int) -> tuple[int, int]:
        lons, zeroth = self.row_lons(row)
        return -zeroth, len(lons) - 1 - zeroth

    def _check_row(self, row: int) -> None:
        if not self.row_min <= row <= self.row_max:
            raise GridError(
                f"Major TOM row {cell_name(row, 0).split('_')[0]} does not exist: rows run from "
                f"{cell_name(self.row_min, 0).split('_')[0]} to "
                f"{cell_name(self.row_max, 0).split('_')[0]} (latitudes {self.latitude_range})"
            )

    def check(self, value: str | Cell | tuple[int, int]) -> Cell:
        """Parse a cell id and check that the cell exists on this grid."""
        cell = parse_cell(value)
        self._check_row(cell.row)
        lo, hi = self.col_range(cell.row)
        if not lo <= cell.col <= hi:
            raise GridError(
                f"Major TOM cell {cell.name} does not exist: row {cell.name.split('_')[0]} has "
                f"columns {cell_name(0, lo).split('_')[1]} to {cell_name(0, hi).split('_')[1]}"
            )
        return cell

    # --- cell geometry ------------------------------------------------------------------
    def corner(self, value: str | Cell) -> tuple[float, float]:
        """``(lat, lon)`` of the cell's bottom-left corner, its grid point."""
        cell = self.check(value)
        lons, zeroth = self.row_lons(cell.row)
        return self.row_lat(cell.row), float(lons[zeroth + cell.col])

    def bounds(self, value: str | Cell) -> BBox:
        """``(west, south, east, north)`` in degrees, as the official ``get_bounded_footprint``."""
        cell = self.check(value)
        lons, zeroth = self.row_lons(cell.row)
        i = zeroth + cell.col
        west = float(lons[i])
        east = float(lons[i + 1]) if i + 1 < len(lons) else float(2 * lons[i] - lons[i - 1])
        return west, self.row_lat(cell.row), east, self.row_top(cell.row)

    def footprint(self, value: str | Cell) -> Polygon:
        """The cell as a lon/lat polygon (EPSG:4326)."""
        from shapely.geometry import box

        return box(*self.bounds(value))

    def utm_crs(self, value: str | Cell) -> str:
        """``'EPSG:326xx'``: the UTM zone of the cell's bottom-left corner (official rule).

        The product's own CRS (the metadata's ``crs``) is the one of its Sentinel tile and can
        differ near zone borders; use that to read pixels.
        """
        lat, lon = self.corner(value)
        return f"EPSG:{utm_epsg(lat, lon)}"

    # --- lookup -------------------------------------------------------------------------
    def rowcol(self, lats: Any, lons: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised point → integer ``(grid_row_u, grid_col_r)``."""
        lats = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        lons = np.atleast_1d(np.asarray(lons, dtype=np.float64))
        if lats.shape != lons.shape:
            raise GridError(f"{lats.size} latitudes but {lons.size} longitudes")
        top = self.row_top(self.row_max)
        bad = ~((lats > self.lats[0]) & (lats <= top)) | ~np.isfinite(lons)
        if bad.any():
            i = int(np.argmax(bad))
            raise GridError(
                f"point (lat {lats[i]}, lon {lons[i]}) is outside the Major TOM grid, which "
                f"covers latitudes {self.lats[0]:.4f} to {top:.4f}; give finite lon/lat degrees"
            )
        pos = np.searchsorted(self.lats, lats) - 1
        rows = pos + self.row_min
        cols = np.empty_like(rows)
        for row in np.unique(rows):
            sel = rows == row
            row_lons, zeroth = self.row_lons(int(row))
            # searchsorted - 1 wraps to the last column for lon <= -180, as the official code.
            idx = np.searchsorted(row_lons, _wrap_lon(lons[sel])) - 1
            cols[sel] = np.mod(idx, len(row_lons)) - zeroth
        return rows, cols

    def cell_at(self, lat: float, lon: float) -> Cell:
        """Point (degrees) → the cell that contains it."""
        rows, cols = self.rowcol([lat], [lon])
        return Cell(int(rows[0]), int(cols[0]))

    def cells_in_bbox(self, bbox: Sequence[float]) -> list[Cell]:
        """Every cell whose footprint intersects ``(west, south, east, north)`` (degrees).

        A bbox with ``west > east`` crosses the antimeridian and is split in two.
        """
        west, south, east, north = (float(v) for v in bbox)
        if not (south <= north and south >= -90 and north <= 90):
            raise GridError(
                f"bbox {tuple(bbox)} is not (west, south, east, north) in degrees: "
                "south must be <= north, both within [-90, 90]"
            )
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            west, east = _wrap_lon(np.array([west]))[0], _wrap_lon(np.array([east]))[0]
        parts = [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]
        south = max(south, float(np.nextafter(self.lats[0], 90)))
        north = min(north, self.row_top(self.row_max))
        if south > north:
            return []
        r0, r1 = (int(v) for v in self.rowcol([south, north], [0.0, 0.0])[0])
        out: list[Cell] = []
        for row in range(r0, r1 + 1):
            row_lons, zeroth = self.row_lons(row)
            seen: set[int] = set()
            for w, e in parts:
                lo = max(int(np.searchsorted(row_lons, w)) - 1, 0)
                hi = max(int(np.searchsorted(row_lons, e)) - 1, 0)
                seen.update(range(lo, hi + 1))
            out.extend(Cell(row, i - zeroth) for i in sorted(seen))
        return out

    def cells_in_geometry(self, geometry: BaseGeometry | gpd.GeoDataFrame) -> list[Cell]:
        """Cells intersecting a shapely geometry (EPSG:4326) or any GeoDataFrame/GeoSeries."""
        import shapely

        if hasattr(geometry, "to_crs"):
            if geometry.crs is None:
                raise GridError("the GeoDataFrame has no CRS; set one with .set_crs(...)")
            geometry = shapely.union_all(np.asarray(geometry.to_crs(4326).geometry))
        candidates = self.cells_in_bbox(geometry.bounds)
        if not candidates:
            return []
        boxes = shapely.box(*np.asarray([self.bounds(c) for c in candidates]).T)
        hit = shapely.intersects(boxes, geometry)
        return [c for c, h in zip(candidates, hit, strict=True) if h]

    def to_geodataframe(self, cells: Iterable[str | Cell]) -> gpd.GeoDataFrame:
        """Cells → GeoDataFrame with the metadata column names and footprint polygons."""
        import geopandas as gpd
        import shapely

        cells = [self.check(c) for c in cells]
        bounds = np.asarray([self.bounds(c) for c in cells], dtype=np.float64).reshape(-1, 4)
        corners = [self.corner(c) for c in cells]
        return gpd.GeoDataFrame(
            {
                "grid_cell": [c.name for c in cells],
                "grid_row_u": np.asarray([c.row for c in cells], dtype=np.int64),
                "grid_col_r": np.asarray([c.col for c in cells], dtype=np.int64),
                "utm_crs": [f"EPSG:{utm_epsg(lat, lon)}" for lat, lon in corners],
            },
            geometry=shapely.box(*bounds.T) if len(cells) else [],
            crs="EPSG:4326",
        )

    def product_grid(
        self,
        value: str | Cell,
        crs: Any = None,
        resolution: float = 10.0,
    ) -> GeoBox:
        """The pixel grid of a Major TOM product of this cell, as a GeoBox in ``crs``.

        The cell's bottom-left corner is projected into ``crs`` (default: the cell's UTM zone),
        moved 340 m down and left, and a 10 680 m square is cut from there: 1068 px at 10 m,
        356 px at 30 m (Core-DEM). This is ``get_product_window`` of the Major TOM extraction
        notebook.
        """
        from pyproj import Transformer

        lat, lon = self.corner(value)
        crs = crs if crs is not None else self.utm_crs(value)
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
        size = round(PRODUCT_SIZE_M / resolution)
        left, bottom = x - PRODUCT_MARGIN_M, y - PRODUCT_MARGIN_M
        top = bottom + size * resolution
        return GeoBox((size, size), Affine(resolution, 0.0, left, 0.0, -resolution, top), crs)

    def product_transform(
        self,
        value: str | Cell,
        crs: str | int | None = None,
        resolution: float = 10.0,
    ) -> tuple[Affine, int, int]:
        """``(transform, width, height)`` of :meth:`product_grid` (the documented older form)."""
        gbox = self.product_grid(value, crs=crs, resolution=resolution)
        return gbox.affine, gbox.width, gbox.height


def parse_tile_name(name: str) -> tuple[Cell, tuple[int, int] | None]:
    """``'282D_485L_3_3'`` → ``(Cell, (3, 3))``; a plain cell id gives ``(Cell, None)``."""
    m = _TILE_RE.match(str(name).strip())
    if not m:
        raise GridError(
            f"{name!r} is neither a Major TOM cell id ('433U_1171R') nor a sub-tile name "
            "('433U_1171R_2_3')"
        )
    sub = (int(m.group(2)), int(m.group(3))) if m.group(2) is not None else None
    return parse_cell(m.group(1)), sub


def subtile_grid(name: str, crs: Any, resolution: float = 10.0) -> GeoBox:
    """Pixel grid of a TerraMesh sub-tile ``<cell>_<i>_<j>`` (as in the TerraMind examples).

    Worked out from the four sample tiles (all exact to the millimetre): the 1068 px product of
    the cell is cut into a 4 x 4 grid of 264 px blocks from its top-left corner, ``i`` counts
    blocks along x (columns) and ``j`` along y (rows), and the 224 px tile is the block's
    top-left corner. ``crs`` is the tile's CRS (the product's UTM zone).
    """
    cell, sub = parse_tile_name(name)
    if sub is None:
        raise GridError(f"{name!r} has no sub-tile index; expected '<cell>_<i>_<j>'")
    i, j = sub
    if not (0 <= i < 4 and 0 <= j < 4):
        raise GridError(f"{name!r}: sub-tile indices run 0..3, got ({i}, {j})")
    product = get_grid().product_grid(cell, crs=crs, resolution=resolution)
    step = SUBTILE_BLOCK_PX * 10.0 / resolution
    tile = product.affine @ Affine.translation(i * step, j * step)
    size = round(SUBTILE_SIZE_PX * 10.0 / resolution)
    return GeoBox((size, size), tile, product.crs)


def subtile_transform(
    name: str, crs: str | int, resolution: float = 10.0
) -> tuple[Affine, int, int]:
    """``(transform, width, height)`` of :func:`subtile_grid` (the documented older form)."""
    gbox = subtile_grid(name, crs, resolution)
    return gbox.affine, gbox.width, gbox.height


@lru_cache(maxsize=4096)
def _row_longitudes(lat: float, dist_km: float) -> tuple[np.ndarray, int]:
    circumference = 2 * math.pi * RADIUS_EQUATOR_KM * math.cos(lat * math.pi / 180)
    m = math.ceil(circumference / dist_km)
    lons = np.sort(np.mod(np.linspace(-180, 180, m + 1)[:-1], 360) - 180)
    lons.setflags(write=False)
    return lons, int(np.flatnonzero(lons == 0)[0])


def _wrap_lon(lons: np.ndarray) -> np.ndarray:
    """Longitudes into ``[-180, 180)``; 180 becomes -180 (the same meridian)."""
    return np.mod(np.asarray(lons, dtype=np.float64) + 180.0, 360.0) - 180.0


# --- module-level API on the 10 km grid -----------------------------------------------------
@lru_cache(maxsize=8)
def get_grid(dist_km: float = 10.0) -> MajorTOMGrid:
    """The (cached) grid for a cell size; 10 km is the grid of every Major TOM Core dataset."""
    return MajorTOMGrid(dist_km)


def cell_at(lat: float, lon: float) -> str:
    """Point in degrees → cell id, e.g. ``cell_at(38.9, 135.2) == '433U_1171R'``."""
    return get_grid().cell_at(lat, lon).name


def cell_footprint(cell: str | Cell) -> Polygon:
    """Cell id → its lon/lat footprint polygon."""
    return get_grid().footprint(cell)


def cell_utm_crs(cell: str | Cell) -> str:
    """Cell id → ``'EPSG:326xx'`` / ``'EPSG:327xx'`` of its bottom-left corner."""
    return get_grid().utm_crs(cell)


def product_grid(cell: str | Cell, crs: Any = None, resolution: float = 10.0) -> GeoBox:
    """Cell id → the GeoBox of its Major TOM product (see the method)."""
    return get_grid().product_grid(cell, crs=crs, resolution=resolution)


def product_transform(
    cell: str | Cell, crs: str | int | None = None, resolution: float = 10.0
) -> tuple[Affine, int, int]:
    """Cell id → ``(transform, width, height)`` of its Major TOM product (see the method)."""
    return get_grid().product_transform(cell, crs=crs, resolution=resolution)


def cells_in_bbox(bbox: Sequence[float]) -> gpd.GeoDataFrame:
    """``(west, south, east, north)`` → GeoDataFrame of every intersecting cell."""
    grid = get_grid()
    return grid.to_geodataframe(grid.cells_in_bbox(bbox))


def cells_for(area: Sequence[float] | BaseGeometry | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A bbox, shapely geometry (lon/lat) or GeoDataFrame → GeoDataFrame of intersecting cells."""
    grid = get_grid()
    if isinstance(area, (tuple, list, np.ndarray)):
        return grid.to_geodataframe(grid.cells_in_bbox(area))
    return grid.to_geodataframe(grid.cells_in_geometry(area))


__all__ = [
    "PRODUCT_MARGIN_M",
    "PRODUCT_SIZE_M",
    "Cell",
    "MajorTOMGrid",
    "cell_at",
    "cell_footprint",
    "cell_name",
    "cell_to_ints",
    "cell_utm_crs",
    "cells_for",
    "cells_in_bbox",
    "get_grid",
    "parse_cell",
    "parse_tile_name",
    "product_grid",
    "product_transform",
    "subtile_grid",
    "subtile_transform",
    "utm_epsg",
]
