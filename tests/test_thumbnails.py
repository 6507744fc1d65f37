"""Major TOM-style thumbnails from physical arrays, checked against pixels worked out by hand
from the raw files, and against the thumbnails Major TOM itself stored for two real cells."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import EXPLORADORES, MAJORTOM_0U, MAJORTOM_199U, terramind
from PIL import Image

from geocopgen.errors import InputError
from geocopgen.io import open_raster
from geocopgen.models import thumbnails as th

# A fully valid 160 px window of the Exploradores DEM (952 to 1855 m, 30 m pixels).
DEM_WINDOW = (slice(40, 200), slice(64, 224))
# Pixels of a 1068 px cell: corners, the middle, and places inside the four quadrants.
S2_PIXELS = [(0, 0), (0, 1067), (1067, 0), (534, 534), (200, 900), (800, 150), (1000, 1000)]


def _hand_s2(dn: int) -> int:
    """Major TOM's S2 thumbnail of one stored DN, spelled out: clip(1.3 (DN/1e4)^0.6) * 255."""
    return int(min(max(1.3 * math.pow(dn / 10000.0, 0.6), 0.0), 1.0) * 255.0)


def _raw_rgb_dn(cell: Path) -> np.ndarray:
    bands = []
    for name in ("B04", "B03", "B02"):
        with rasterio.open(cell / f"{name}.tif") as f:
            bands.append(f.read(1))
    return np.stack(bands)


@pytest.fixture(scope="module", params=[(MAJORTOM_0U, -1000), (MAJORTOM_199U, 0)], ids=str)
def s2_cell(request: pytest.FixtureRequest):
    cell, offset = request.param
    reflectance = open_raster(cell).sel(band=["B04", "B03", "B02"]).compute()
    return cell, offset, reflectance


def test_s2_thumbnail_matches_hand_computed_pixels_of_the_stored_dn(s2_cell):
    cell, offset, reflectance = s2_cell
    assert reflectance.attrs["s2_offset"] == offset  # decided by the reader from the product id
    thumb = th.s2_rgb_thumbnail(reflectance)
    raw = _raw_rgb_dn(cell)
    assert thumb.dtype == np.uint8 and thumb.shape == (3, 1068, 1068)
    for row, col in S2_PIXELS:
        for band in range(3):
            expected = _hand_s2(int(raw[band, row, col]))
            assert thumb[band, row, col] == expected, (row, col, band)


def test_s2_thumbnail_reproduces_major_toms_own_thumbnail(s2_cell):
    """Major TOM stored the thumbnail as JPEG, so agreement is to a couple of grey levels."""
    cell, offset, reflectance = s2_cell
    stored = np.asarray(Image.open(cell / "thumbnail.png").convert("RGB")).transpose(2, 0, 1)
    mean_error = np.abs(th.s2_rgb_thumbnail(reflectance).astype(int) - stored).mean()
    assert mean_error < 3.0
    dropped = th.s2_rgb_thumbnail(reflectance, s2_offset=0).astype(int) - stored
    if offset:  # forgetting the +1000 makes the picture darker than the training data
        assert dropped.mean() < -30.0
    else:
        assert np.abs(dropped).mean() == mean_error


def test_s2_thumbnail_of_numpy_needs_the_offset():
    rgb = open_raster(MAJORTOM_0U).sel(band=["B04", "B03", "B02"])[:, :64, :64].values
    with pytest.raises(InputError, match="s2_offset"):
        th.s2_rgb_thumbnail(rgb)
    dn = _raw_rgb_dn(MAJORTOM_0U)[:, :64, :64]
    expected = np.vectorize(_hand_s2)(dn)
    assert np.array_equal(th.s2_rgb_thumbnail(rgb, s2_offset=-1000), expected)
    nodata = rgb.copy()
    nodata[:, 0, 0] = np.nan
    assert th.s2_rgb_thumbnail(nodata, s2_offset=-1000)[:, 0, 0].tolist() == [0, 0, 0]


def _hand_illumination(z: np.ndarray) -> np.ndarray:
    """cos(normal, sun) with the sun at azimuth 315 (north-west), altitude 45, 1 m pixels.

    Slopes by finite differences, east along columns and north up the rows (row 0 is north):
    central inside, one-sided on the border.
    """
    z = z.astype(np.float64)
    east = np.empty_like(z)
    east[:, 1:-1] = (z[:, 2:] - z[:, :-2]) / 2
    east[:, 0], east[:, -1] = z[:, 1] - z[:, 0], z[:, -1] - z[:, -2]
    north = np.empty_like(z)
    north[1:-1] = (z[:-2] - z[2:]) / 2
    north[0], north[-1] = z[0] - z[1], z[-2] - z[-1]
    az, alt = math.radians(315.0), math.radians(45.0)
    sun_east, sun_north = math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt)
    dot = -east * sun_east - north * sun_north + math.sin(alt)
    return dot / np.sqrt(east**2 + north**2 + 1.0)


def test_hillshade_matches_hand_computed_pixels_on_a_real_dem():
    with rasterio.open(EXPLORADORES) as f:
        z = f.read(1)[DEM_WINDOW]
    assert (z != f.nodata).all() and z.max() - z.min() > 800
    shade = th.dem_hillshade(z)
    cos = _hand_illumination(z)
    stretched = (cos - cos.min()) / (cos.max() - cos.min())
    assert shade.flat[cos.argmax()] == 255 and shade.flat[cos.argmin()] == 0
    for row, col in [(1, 1), (80, 80), (0, 120), (159, 37), (42, 151)]:
        assert shade[row, col] == int(255.0 * stretched[row, col]), (row, col)
    # slopes facing the north-west sun are lit, slopes facing away are shaded
    rise_south, east = np.gradient(z.astype(np.float64))
    north = -rise_south
    facing_sun = (east > 20) & (north < -20)  # downhill towards the west and the north
    facing_away = (east < -20) & (north > 20)
    assert shade[facing_sun].mean() > shade[facing_away].mean() + 60


def test_hillshade_of_a_flat_cell_and_of_nodata():
    assert th.dem_hillshade(np.full((8, 8), 412.0))[3, 3] == int(255 * math.sin(math.radians(45)))
    dem = open_raster(EXPLORADORES)  # nodata (-9999) arrives as NaN
    shade = th.dem_hillshade(dem)
    missing = np.isnan(dem.values[0])
    assert missing.any() and (shade[missing] == 0).all()
    assert shade.max() == 255 and th.dem_hillshade(dem[:, 40:200, 64:224]).shape == (160, 160)


def test_dem_thumbnail_is_enlarged_bilinearly_to_the_cell():
    with rasterio.open(EXPLORADORES) as f:
        small = th.dem_hillshade(f.read(1)[DEM_WINDOW])
    big = th.upsample_dem_thumbnail(small, 480)
    assert big.shape == (480, 480) and big.dtype == np.uint8
    # x3: output pixel 3i+1 sits on source pixel i's centre; 3i+2 is 1/3 of the way to i+1
    assert np.array_equal(big[1::3, 1::3], small)
    i, j = 50, 70
    along = small[i, j : j + 2].astype(float)
    assert abs(int(big[3 * i + 1, 3 * j + 2]) - (2 / 3 * along[0] + 1 / 3 * along[1])) <= 0.5 + 1e-9


def test_centre_tiles_and_model_range_on_a_real_thumbnail():
    image = np.asarray(Image.open(MAJORTOM_199U / "thumbnail.png").convert("RGB"))
    image = image.transpose(2, 0, 1)
    tiles = th.centre_tiles(image)
    assert tiles.shape == (16, 3, 256, 256)
    assert np.array_equal(tiles[0], image[:, 22:278, 22:278])  # 22 px off a 1068 px cell
    assert np.array_equal(tiles[6], image[:, 278:534, 534:790])  # row 1, column 2
    centre = th.centre_tiles(image, grid=1)  # COP-GEN-Beta's --center_crop: one tile per cell
    assert np.array_equal(centre[0], image[:, 406:662, 406:662])
    x = th.to_model_range(tiles)
    assert x.shape == (16, 3, 256, 256)
    assert float(x[0, 0, 0, 0]) == pytest.approx(tiles[0, 0, 0, 0] / 127.5 - 1, abs=1e-6)
    dem = th.to_model_range(np.array([[0, 255]], dtype=np.uint8))
    assert dem.shape == (1, 3, 1, 2) and dem[0, :, 0].tolist() == [[-1.0, 1.0]] * 3
    with pytest.raises(InputError, match="1024"):
        th.centre_tiles(image[:, :1000, :1000])


def test_s1_thumbnail_hand_pixels_and_why_a_crop_differs():
    db = open_raster(terramind("S1RTC")).values.astype(np.float64)
    thumb = th.s1_rtc_thumbnail(db)
    vv, vh = db
    red = (vv - vv.min()) / (vv.max() - vv.min()) * 255
    blue = (vh - vh.min()) / (vh.max() - vh.min()) * 255
    green_max = (red + blue).max()
    for row, col in [(0, 0), (100, 50), (223, 223)]:
        r, b = red[row, col], blue[row, col]
        assert thumb[:, row, col].tolist() == [int(r), int(255 * (r + b) / green_max), int(b)]
    # the stretch is over the image given: a crop does not reproduce its part of the whole
    crop = th.s1_rtc_thumbnail(db[:, :112, :112])
    assert not np.array_equal(crop, thumb[:, :112, :112])


def test_the_official_weights_page_names_only_functions_that_exist():
    import geocopgen.models as models

    page = (Path(__file__).parents[1] / "docs" / "official-weights.md").read_text()
    section = page[page.index("## Thumbnail conventions") : page.index("## What can and cannot")]
    named = set(re.findall(r"`([a-z_0-9]+)\(", section)) - {"int", "clip"}  # formulas
    assert named >= {"s2_rgb_thumbnail", "dem_hillshade", "s1_rtc_thumbnail", "centre_tiles"}
    for name in named:
        assert callable(getattr(th, name)) and name in models.__all__, name
