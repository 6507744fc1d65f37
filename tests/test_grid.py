"""Major TOM grid: official formulas, worked examples and the real rasters as oracles."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Polygon, box

from geocopgen.errors import GridError
from geocopgen.sources.majortom_grid import (
    Cell,
    cell_at,
    cell_footprint,
    cell_name,
    cell_to_ints,
    cell_utm_crs,
    cells_for,
    cells_in_bbox,
    get_grid,
    parse_cell,
    parse_tile_name,
    product_transform,
    subtile_transform,
    utm_epsg,
)

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
MAJORTOM = sorted((DATA / "majortom" / "Core-S2L2A").glob("*/*/*"))
TERRAMIND = sorted((DATA / "terramind" / "S2L2A").glob("*.tif"))


def _centre_lonlat(src: rasterio.DatasetReader) -> tuple[float, float]:
    x, y = src.transform @ (src.width / 2, src.height / 2)
    lon, lat = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(x, y)
    return lon, lat


def test_grid_shape_matches_official_numbers() -> None:
    g = get_grid()
    assert (g.row_min, g.row_max) == (-946, 946)  # 1893 rows with the (-85, 85) range
    assert len(g.lats) == 1893
    assert g.row_lat(0) == 0.0
    assert g.row_lat(1) == pytest.approx(180 / 2004)
    assert len(g.row_lons(0)[0]) == 4008
    assert g.col_range(0) == (-2004, 2003)


def test_worked_examples_from_the_reference() -> None:
    g = get_grid()
    lat, lon = g.corner("433U_1171R")
    assert (lat, lon) == (pytest.approx(38.8922, abs=1e-4), pytest.approx(135.1154, abs=1e-4))
    assert len(g.row_lons(433)[0]) == 3120
    lat, lon = g.corner("454U_120R")
    assert (lat, lon) == (pytest.approx(40.7784, abs=1e-4), pytest.approx(14.2339, abs=1e-4))
    # Major TOM metadata row: centre (40.823861, 14.292709), crs EPSG:32633, in cell 454U_120R.
    assert cell_at(40.823861, 14.292709) == "454U_120R"
    assert cell_utm_crs("454U_120R") == "EPSG:32633"


def test_integer_forms_round_trip() -> None:
    assert cell_to_ints("922D_249L") == (-922, -249)
    assert cell_to_ints("0U_0R") == (0, 0)
    assert cell_name(-922, -249) == "922D_249L"
    assert parse_cell((433, 1171)).name == "433U_1171R"
    assert parse_cell(" 433u_1171r ") == Cell(433, 1171)


@pytest.mark.parametrize("bad", ["", "433_1171R", "433U-1171R", "U433_R1171", "0D_5R", "5U_0L"])
def test_invalid_cell_ids_are_named_errors(bad: str) -> None:
    with pytest.raises(GridError, match="not a Major TOM cell id"):
        parse_cell(bad)


def test_cells_outside_the_grid_are_refused() -> None:
    with pytest.raises(GridError, match="row 947U does not exist"):
        cell_footprint("947U_0R")
    with pytest.raises(GridError, match="columns 2004L to 2003R"):
        cell_footprint("0U_2004R")
    with pytest.raises(GridError, match="outside the Major TOM grid"):
        cell_at(89.0, 0.0)


def test_utm_zone_exceptions() -> None:
    assert utm_epsg(-1, -174.34) == 32701
    assert utm_epsg(48, -4) == 32630
    assert utm_epsg(78, 13) == 32633  # Svalbard
    assert utm_epsg(60, 5) == 32632  # Norway
    assert utm_epsg(-36, 175.7) == 32760


@pytest.mark.parametrize("product", MAJORTOM, ids=lambda p: p.parent.name)
def test_majortom_products_sit_exactly_on_their_cell(product: Path) -> None:
    cell = product.parent.name
    for band, res, size in (("B02", 10.0, 1068), ("B05", 20.0, 534), ("B01", 60.0, 178)):
        with rasterio.open(product / f"{band}.tif") as src:
            transform, w, h = product_transform(cell, crs=src.crs, resolution=res)
            assert (w, h) == (src.width, src.height) == (size, size)
            np.testing.assert_allclose(tuple(transform), tuple(src.transform), rtol=0, atol=1e-6)
            assert cell_utm_crs(cell) == src.crs.to_string()
            assert cell_at(*_centre_lonlat(src)[::-1]) == cell


def test_majortom_product_margin_contains_the_footprint() -> None:
    with rasterio.open(MAJORTOM[0] / "B02.tif") as src:
        to_utm = Transformer.from_crs(4326, src.crs, always_xy=True)
        west, south, east, north = cell_footprint(MAJORTOM[0].parent.name).bounds
        xs, ys = to_utm.transform([west, east, west, east], [south, south, north, north])
        left, bottom, right, top = src.bounds
        # The grid point (bottom-left corner) is exactly 340 m inside the product's corner ...
        assert xs[0] - left == pytest.approx(340, abs=1e-6)
        assert ys[0] - bottom == pytest.approx(340, abs=1e-6)
        # ... and the margin absorbs the rotation of the lon/lat cell inside the UTM zone.
        assert min(xs) > left and max(xs) < right and min(ys) > bottom and max(ys) < top


@pytest.mark.parametrize("tile", TERRAMIND, ids=lambda p: p.stem)
def test_terramind_subtiles_fall_in_their_cell(tile: Path) -> None:
    cell, sub = parse_tile_name(tile.stem)
    assert sub is not None
    with rasterio.open(tile) as src:
        assert cell_at(*_centre_lonlat(src)[::-1]) == cell.name
        transform, w, h = subtile_transform(tile.stem, crs=src.crs)
        assert (w, h) == (src.width, src.height) == (224, 224)
        np.testing.assert_allclose(tuple(transform), tuple(src.transform), rtol=0, atol=1e-6)


def test_subtile_names_are_checked() -> None:
    assert parse_tile_name("433U_1171R") == (Cell(433, 1171), None)
    with pytest.raises(GridError, match=r"sub-tile indices run 0\.\.3"):
        subtile_transform("433U_1171R_4_0", crs=32653)
    with pytest.raises(GridError, match="neither a Major TOM cell id"):
        parse_tile_name("433U_1171R_4")


def test_points_fall_inside_their_cell_footprint() -> None:
    rng = np.random.default_rng(0)
    lats = rng.uniform(-84.9, 84.9, 3000)
    lons = rng.uniform(-180, 180, 3000)
    g = get_grid()
    rows, cols = g.rowcol(lats, lons)
    for lat, lon, r, c in zip(lats[:400], lons[:400], rows[:400], cols[:400], strict=True):
        west, south, east, north = g.bounds(Cell(int(r), int(c)))
        assert south < lat <= north and west < lon <= east


def test_points_on_grid_lines_belong_below_and_left() -> None:
    g = get_grid()
    lat0, lon0 = g.corner("10U_20R")
    assert cell_at(lat0, lon0 + 0.01) == "9U_20R"  # on the bottom edge → row below
    assert cell_at(lat0 + 0.01, lon0) == "10U_19R"  # on the left edge → column to the left
    # -180 and 180 are one meridian: the last column (official searchsorted - 1 wrap).
    assert cell_at(0.05, -180.0) == cell_at(0.05, 180.0) == "0U_2003R"


def test_bbox_cells_cover_every_point_and_only_intersecting_cells() -> None:
    bbox = (12.2, 41.6, 13.0, 42.2)  # Rome, the COP-GEN-Beta download example
    gdf = cells_in_bbox(bbox)
    assert list(gdf.columns) == ["grid_cell", "grid_row_u", "grid_col_r", "utm_crs", "geometry"]
    assert gdf.crs.to_epsg() == 4326
    assert gdf.grid_cell.is_unique
    assert gdf.geometry.intersects(box(*bbox)).all()
    rng = np.random.default_rng(1)
    lats, lons = rng.uniform(41.6, 42.2, 2000), rng.uniform(12.2, 13.0, 2000)
    rows, cols = get_grid().rowcol(lats, lons)
    assert {cell_name(int(r), int(c)) for r, c in zip(rows, cols, strict=True)} <= set(
        gdf.grid_cell
    )
    assert (gdf.utm_crs == "EPSG:32633").all()
    # Minimal: the neighbours just outside each row's run of cells do not intersect the bbox.
    g = get_grid()
    for row, cells in gdf.groupby("grid_row_u"):
        lo, hi = cells.grid_col_r.min(), cells.grid_col_r.max()
        assert hi - lo + 1 == len(cells)
        for col in (lo - 1, hi + 1):
            assert not g.footprint(Cell(int(row), int(col))).intersects(box(*bbox))
    assert sorted(gdf.grid_row_u.unique()) == list(range(463, 470))


def test_antimeridian_bbox_is_split() -> None:
    crossing = cells_in_bbox((179.8, -0.2, -179.8, 0.2))
    east = cells_in_bbox((179.8, -0.2, 180.0, 0.2))
    west = cells_in_bbox((-180.0, -0.2, -179.8, 0.2))
    assert set(crossing.grid_cell) == set(east.grid_cell) | set(west.grid_cell)
    assert len(crossing) < 50  # not the whole band of the globe
    assert {"0U_2003R", "0U_2004L", "1D_2003R"} <= set(crossing.grid_cell)
    assert crossing.geometry.bounds.maxx.max() <= 180.0 + 1e-9


def test_geometry_and_geodataframe_inputs() -> None:
    poly = Polygon([(12.2, 41.6), (13.0, 41.6), (12.2, 42.2)])  # half of its bbox
    by_geom = cells_for(poly)
    in_bbox = set(cells_in_bbox(poly.bounds).grid_cell)
    assert set(by_geom.grid_cell) < in_bbox
    assert len(by_geom) > len(in_bbox) / 2
    assert by_geom.geometry.intersects(poly).all()
    projected = gpd.GeoDataFrame(geometry=[poly], crs=4326).to_crs(32633)
    by_gdf = cells_for(projected)
    assert set(by_gdf.grid_cell) == set(by_geom.grid_cell)
    with pytest.raises(GridError, match="no CRS"):
        cells_for(gpd.GeoDataFrame(geometry=[poly]))


def test_bad_bbox_is_a_named_error() -> None:
    with pytest.raises(GridError, match="south must be <= north"):
        cells_in_bbox((0, 10, 1, 5))
