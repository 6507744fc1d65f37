"""Readers, codecs, detection and alignment on the real sample rasters."""

from __future__ import annotations

import sys
import warnings

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rioxarray
from conftest import (
    DATA,
    EXPLORADORES,
    LOS_ANGELES,
    MAJORTOM_0U,
    MAJORTOM_199U,
    VIRGINIA,
    terramind,
    write_variant,
)
from rasterio.windows import Window

from geocopgen.errors import GridError, NoOverlapError, OffsetWarning, ResamplingWarning
from geocopgen.io import align, model_grid, open_raster, plan_input, reproject, utm_grid
from geocopgen.io.decoding import S2_DN, Decoding
from geocopgen.modalities import get_modality
from geocopgen.raster.grid import at_resolution, grid_of, pixel_size

PLACES = ["282D_485L_3_3", "38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3"]


# --- detection and the ModalityArray contract -----------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (terramind("S2L1C"), "s2l1c"),
        (terramind("S2L2A"), "s2l2a"),
        (terramind("S1RTC"), "s1rtc"),
        (terramind("DEM"), "dem"),
        (MAJORTOM_0U, "s2l2a"),
        (VIRGINIA, "s2l1c"),
        (EXPLORADORES, "dem"),
        (LOS_ANGELES, "dem"),
        (DATA / "dem" / "rome_30m_egm96.tif", "dem"),
    ],
)
def test_detects_modality(path, expected):
    assert plan_input(path).modality.name == expected


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("modality", ["S2L1C", "S2L2A", "S1RTC", "DEM"])
def test_modality_array_contract(place, modality):
    path = terramind(modality, place)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)
        arr = open_raster(path)
    m = get_modality(modality)
    assert arr.dims == ("band", "y", "x")
    assert arr.dtype == np.float32
    assert isinstance(arr.data, dsa.Array)
    assert list(arr.band.values) == list(m.band_names)
    assert arr.attrs["modality"] == m.name and arr.attrs["units"] == m.units
    assert arr.attrs["source"] == str(path)
    assert np.isnan(arr.rio.nodata)
    with rasterio.open(path) as src:
        assert arr.rio.crs == src.crs
        assert arr.rio.transform() == src.transform
        assert arr.shape == (src.count, src.height, src.width)


def test_band_descriptions_reorder_bands(tmp_path):
    """A file whose descriptions name the bands in another order is read in registry order."""
    names = ["VH", "VV"]
    src = write_variant(terramind("S1RTC"), tmp_path / "s1.tif", data=lambda a: a[::-1].copy())
    with rasterio.open(src, "r+") as ds:
        for i, n in enumerate(names, start=1):
            ds.set_band_description(i, n)
    arr = open_raster(src, "s1rtc").values
    ref = open_raster(terramind("S1RTC")).values
    np.testing.assert_array_equal(arr, ref)


# --- codecs ---------------------------------------------------------------------------------
def test_s2_dn_round_trip_is_exact():
    """(DN + offset) / 10000 in float32, and back, recovers every DN of a real tile."""
    path = terramind("S2L2A")
    arr = open_raster(path)
    with rasterio.open(path) as src:
        dn = src.read()
    decoding = Decoding(get_modality("s2l2a"), S2_DN, offset=arr.attrs["s2_offset"])
    back = decoding.encode(arr.values, dn.dtype, nodata=0)
    np.testing.assert_array_equal(back, dn)
    expected = ((dn.astype(np.float64) + arr.attrs["s2_offset"]) / 10000).astype(np.float32)
    np.testing.assert_array_equal(arr.values, expected)


def test_majortom_offset_applied_by_processing_baseline():
    """N0400 product: reflectance = (DN - 1000) / 10000, checked by hand on B02."""
    arr = open_raster(MAJORTOM_0U)
    assert arr.attrs["s2_offset"] == -1000
    assert arr.attrs["datetime"] == "2022-07-06T08:56:11"
    with rasterio.open(MAJORTOM_0U / "B02.tif") as src:
        dn = src.read(1, window=Window(500, 400, 3, 2)).astype(np.float64)
    got = arr.sel(band="B02").values[400:402, 500:503]
    np.testing.assert_array_equal(got, ((dn - 1000) / 10000).astype(np.float32))


def test_majortom_n9999_offset_from_acquisition_date():
    plan = plan_input(MAJORTOM_199U)
    assert plan.decoding.offset == 0
    assert "20200223" in plan.evidence["s2_offset"]


def test_terramind_offset_from_dark_pixels_and_override():
    plan = plan_input(terramind("S2L2A"))
    assert plan.decoding.offset == 0 and "below 1000" in plan.evidence["s2_offset"]
    assert plan_input(terramind("S2L2A"), offset=-1000).decoding.offset == -1000


def test_no_offset_evidence_warns():
    with pytest.warns(OffsetWarning, match="609U_541L_3_0"):
        plan = plan_input(terramind("S2L1C", "609U_541L_3_0"))
    assert plan.decoding.offset == 0


def test_warnings_name_the_callers_line():
    """Issue 27 row 20: the offset warning showed a line inside geocopgen; it names the line
    that called geocopgen, however deep the warning is raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        plan_input(terramind("S2L1C", "609U_541L_3_0"))
    offset = [w for w in caught if issubclass(w.category, OffsetWarning)]
    assert offset and all((w.filename, w.lineno) == (__file__, line) for w in offset)


def test_s1_db_passes_through():
    path = terramind("S1RTC")
    with rasterio.open(path) as src:
        db = src.read()
    arr = open_raster(path)
    assert "negative" in plan_input(path).evidence["s1_scale"]
    np.testing.assert_allclose(arr.values, db, rtol=1e-6)


def test_s1_linear_power_is_detected_and_converted(tmp_path):
    """Linear power (10^(dB/10)) is recognised by its sign and converted back to dB."""
    lin = write_variant(
        terramind("S1RTC"), tmp_path / "s1_gamma0.tif", data=lambda db: 10 ** (db / 10)
    )
    plan = plan_input(lin, "s1rtc")
    assert plan.decoding.encoding == "s1_linear"
    with rasterio.open(terramind("S1RTC")) as src:
        db = src.read()
    np.testing.assert_allclose(open_raster(lin, "s1rtc").values, db, atol=1e-4)
    forced = open_raster(lin, "s1rtc", s1_scale="db").values
    np.testing.assert_allclose(forced, 10 ** (db / 10), rtol=1e-6)


def test_dem_metres_exact_and_declared_nodata():
    arr = open_raster(EXPLORADORES)
    with rasterio.open(EXPLORADORES) as src:
        raw = src.read(1)
    values = arr.values[0]
    assert np.array_equal(np.isnan(values), raw == -9999)
    np.testing.assert_array_equal(values[raw != -9999], raw[raw != -9999])


# --- multi-resolution folders ---------------------------------------------------------------
def _bilinear_by_hand(s: np.ndarray, v: float, u: float) -> float:
    """The bilinear rule at fractional source pixel coordinates (v, u), in float64."""
    r0, c0 = int(np.floor(v)), int(np.floor(u))
    fy, fx = v - r0, u - c0
    return (
        (1 - fy) * (1 - fx) * s[r0, c0]
        + (1 - fy) * fx * s[r0, c0 + 1]
        + fy * (1 - fx) * s[r0 + 1, c0]
        + fy * fx * s[r0 + 1, c0 + 1]
    )


def test_majortom_20m_band_is_bilinear_on_10m_grid():
    """B05 (20 m) on the 10 m grid, against the bilinear rule computed by hand."""
    arr = open_raster(MAJORTOM_0U)
    with rasterio.open(MAJORTOM_0U / "B05.tif") as src:
        s = src.read(1).astype(np.float64)
    i, j = 101, 202  # 10 m pixel centre -> 20 m pixel coords u = j/2 - 0.25, v = i/2 - 0.25
    dn = _bilinear_by_hand(s, i / 2 - 0.25, j / 2 - 0.25)
    got = arr.sel(band="B05").values[i, j]
    assert got == pytest.approx((dn - 1000) / 10000, abs=1e-7)
    assert plan_input(MAJORTOM_0U).to_dict()["resampled"]["B05"] == "bilinear"


def test_60m_band_in_float32_is_within_a_thousandth_of_a_dn_of_the_float64_rule():
    """B01 (60 m) on the 10 m grid: interpolated in float32, but as the float64 rule gives."""
    arr = open_raster(VIRGINIA)
    with rasterio.open(VIRGINIA / "B01.tif") as src:
        s, coarse = src.read(1).astype(np.float64), src.transform
    fine, offset = arr.rio.transform(), arr.attrs.get("s2_offset") or 0
    b01 = arr.sel(band="B01").values
    worst = 0.0
    for i, j in [(101, 202), (1000, 1333), (7, 1800), (1500, 17)]:
        u, v = ~coarse * (fine * (j + 0.5, i + 0.5))  # the 60 m grid is not nested in the 10 m
        dn = _bilinear_by_hand(s, v - 0.5, u - 0.5)
        worst = max(worst, abs(float(b01[i, j]) * 10000 - offset - dn))
    assert worst < 2e-3  # DN; float32 reflectance itself resolves ~1e-3 DN


def test_resampled_bands_do_not_depend_on_the_window():
    """Overlapping chips must see identical values (60 m bands included)."""
    arr = open_raster(VIRGINIA)
    full = arr.isel(band=[0, 4, 9]).values
    for r, c in [(0, 0), (223, 447), (1691, 1677), (1000, 5)]:
        chip = arr.isel(band=[0, 4, 9], y=slice(r, r + 256), x=slice(c, c + 256)).values
        np.testing.assert_array_equal(chip, full[:, r : r + 256, c : c + 256])


def test_virginia_grid_is_the_10m_band_grid():
    arr = open_raster(VIRGINIA)
    with rasterio.open(VIRGINIA / "B02.tif") as src:
        assert arr.rio.transform() == src.transform and arr.shape[1:] == src.shape
    # the 20 m files end 10 m short of the 10 m grid: that last row has no 20 m data
    b05 = arr.sel(band="B05").values
    assert np.isnan(b05[-1]).all() and np.isfinite(b05[:-1]).all()


# --- alignment ------------------------------------------------------------------------------
def test_same_grid_needs_no_resampling():
    s2 = open_raster(terramind("S2L2A"))
    dem = open_raster(terramind("DEM"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResamplingWarning)
        out = align([s2, dem])
    assert out[0] is s2
    # the DEM file's origin differs from the S2 file's by 1e-10 m: same grid, exact georef
    assert out[1].rio.transform() == s2.rio.transform()
    np.testing.assert_array_equal(out[1].values, dem.values)


def test_dem_30m_onto_10m_grid_bilinear():
    dem = open_raster(EXPLORADORES)
    target = model_grid(dem)
    assert pixel_size(target) == (10.0, 10.0) and target.transform.c == 627175.0
    assert (target.width, target.height) == (539 * 3, 618 * 3)
    with pytest.warns(ResamplingWarning, match="bilinear"):
        fine = reproject(dem, target)
    assert fine.rio.transform() == target.transform and fine.rio.crs == dem.rio.crs
    # the centre of each 30 m pixel is the centre of the middle 10 m pixel: same value there
    coarse = dem.values[0]
    mid = fine.values[0][1::3, 1::3]
    both = np.isfinite(coarse) & np.isfinite(mid)
    np.testing.assert_allclose(mid[both], coarse[both], atol=1e-3)


def test_geographic_dem_onto_utm_10m():
    dem = open_raster(LOS_ANGELES)
    target = utm_grid(dem, 10.0)
    assert target.crs.to_epsg() == 32611 and pixel_size(target) == (10.0, 10.0)
    with pytest.warns(ResamplingWarning):
        utm = reproject(dem, target).values[0]
    valid = utm[np.isfinite(utm)]
    assert valid.size > 0.9 * utm.size
    assert valid.min() > 35 and valid.max() < 430  # the file's 41..422 m, smoothed


def test_downsampling_uses_average_and_never_nearest():
    dem = open_raster(terramind("DEM"))
    coarse = at_resolution(grid_of(dem), 30)
    with pytest.warns(ResamplingWarning, match="average"):
        out = reproject(dem, coarse).values[0]
    np.testing.assert_allclose(out[0, 0], dem.values[0, :3, :3].mean(), rtol=1e-6)
    with pytest.raises(GridError, match="nearest"):
        reproject(dem, coarse, resampling="nearest")


def test_non_overlapping_conditions_are_refused():
    with pytest.raises(NoOverlapError, match="exploradores"):
        align([open_raster(LOS_ANGELES), open_raster(EXPLORADORES)])


# --- xarray inputs --------------------------------------------------------------------------
def test_xarray_input_matches_file_reader():
    raw = rioxarray.open_rasterio(terramind("S2L2A"), chunks=True)
    arr = open_raster(raw, "s2l2a")
    assert isinstance(arr.data, dsa.Array)
    np.testing.assert_array_equal(arr.values, open_raster(terramind("S2L2A")).values)
    assert arr.rio.transform() == raw.rio.transform()
    again = open_raster(arr)  # a ModalityArray passes through unchanged in value
    np.testing.assert_array_equal(again.values, arr.values)


# --- sources: plans stated without headers, bands from GeoTIFF bytes ------------------------
def _virginia_bytes_plan(fetches: list[str]):
    """Virginia's band files as GeoTIFF bytes behind a MemoryBands, planned with plan_bands."""
    from functools import partial

    from geocopgen.io import MemoryBands, plan_bands

    reference = plan_input(VIRGINIA)
    keys = {b.name: f"virginia/{b.name}" for b in reference.bands}
    opener = MemoryBands(partial(_read_band_bytes, keys, fetches))
    plan = plan_bands(
        keys,
        "s2l1c",
        reference.grid,
        source="virginia-bytes",
        offset=reference.decoding.offset,
        raw_dtype=reference.raw_dtype,
        opener=opener,
    )
    return reference, plan


def _read_band_bytes(keys: dict[str, str], fetches: list[str]) -> dict[str, bytes]:
    fetches.append("fetch")
    return {key: (VIRGINIA / f"{band}.tif").read_bytes() for band, key in keys.items()}


def test_plan_bands_from_bytes_reads_what_plan_input_reads():
    """One reading path: bands stated by a source and held as bytes read exactly as the files,
    the 20/60 m resampling and the NaN of the short 20 m files included; the bytes are fetched
    once, on the first read, and the lazy array pickles (dask.distributed) and reads alone."""
    import pickle

    fetches: list[str] = []
    reference, plan = _virginia_bytes_plan(fetches)
    assert [(b.name, b.resampling) for b in plan.bands] == [
        (b.name, b.resampling) for b in reference.bands
    ]
    assert plan.decoding == reference.decoding and plan.grid == reference.grid
    a, b = reference.open().array, plan.open().array
    assert fetches == []  # lazy: nothing fetched yet
    for rows, cols in [(slice(1700, None), slice(0, 300)), (slice(200, 456), slice(900, 1156))]:
        expected = a.isel(y=rows, x=cols).values
        got = b.isel(y=rows, x=cols).values
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(got, expected)
    assert np.isnan(a.sel(band="B05").values[-1]).all()  # the NaN row is really compared
    assert fetches == ["fetch"]
    again = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(
        again.isel(y=slice(0, 64), x=slice(0, 64)).values,
        a.isel(y=slice(0, 64), x=slice(0, 64)).values,
    )
    assert fetches == ["fetch"]  # the copy fetched its own bytes (into its own copy of the list)


def test_plan_bands_names_missing_bands():
    from geocopgen.errors import BandMismatchError
    from geocopgen.io import plan_bands

    grid = plan_input(VIRGINIA).grid
    with pytest.raises(BandMismatchError, match="no B01, B03, B04, B05"):
        plan_bands({"B02": "x"}, "s2l1c", grid, source="partial", offset=0)


def test_s1_linear_power_zero_or_negative_is_nodata():
    """The decoding's documented rule: power <= 0 has no dB value, so it is NaN, not -inf."""
    decoding = Decoding(get_modality("s1rtc"), "s1_linear", nodata=(-32768.0,))
    raw = np.array([[1.0, 0.1, 0.0, -0.5, -32768.0]], dtype=np.float32)
    out = decoding.decode(raw)
    np.testing.assert_array_equal(np.isnan(out), [[False, False, True, True, True]])
    np.testing.assert_allclose(out[0, :2], [0.0, -10.0], atol=1e-6)


def test_selecting_one_band_reads_only_that_band(monkeypatch):
    """``sel(band=...)`` gives the getter an integer: it must read that band, not all of them."""
    from geocopgen.io.raster_source import RasterSource

    calls = []
    read = RasterSource.read

    def spy(self, window, bands=None):
        calls.append(tuple(bands))
        return read(self, window, bands)

    arr = open_raster(MAJORTOM_0U)
    expected = arr.isel(band=[4, 1]).values
    monkeypatch.setattr(RasterSource, "read", spy)
    np.testing.assert_array_equal(arr.sel(band="B05").values, expected[0])
    np.testing.assert_array_equal(arr.isel(band=1, x=-3).values, expected[1][:, -3])
    assert set(calls) == {(4,), (1,)}


def test_an_input_is_read_from_its_files_only_when_opened_from_them():
    """Issue 24: whether an input is read from its files is decided when it is opened, and
    handed on in the OpenedInput; no registry: an array finds its files again only by proving
    it is exactly that read (``OpenedInput.recovered``: the same dask name when its source is
    planned again), never once sliced or computed."""
    from geocopgen.io import OpenedInput, open_input
    from geocopgen.io.readers import bands_on_grid

    opened = open_input(VIRGINIA)
    g20 = at_resolution(grid_of(opened.array), 20)
    assert opened.files is not None and bands_on_grid(opened, ["B05"], g20) is not None
    for array in (opened.array, opened.array.isel(x=slice(0, 100)), opened.array + 0):
        assert OpenedInput.of(array).files is None and open_input(array).files is None
        assert bands_on_grid(OpenedInput(array), ["B05"], g20) is None
    assert OpenedInput.of(opened) is opened
    assert OpenedInput.recovered(opened.array).files is not None
    for changed in (opened.array.isel(x=slice(0, 100)), opened.array + 0):
        assert OpenedInput.recovered(changed).files is None
