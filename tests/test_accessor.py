"""The ``.copgen`` accessor on lazy (dask) DataArrays and Datasets: new georeferenced objects
with ``spatial_ref`` intact, inputs left lazy, and an encode → decode round trip with the bundled
model that matches the model's own single-chip path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rioxarray
import xarray as xr
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import terramind

import geocopgen  # registers .copgen
from geocopgen import api
from geocopgen.raster.grid import grid_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(steps=2, progress=False, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def lazy(modality: str) -> xr.DataArray:
    folder = {"s2l2a": "S2L2A", "s1rtc": "S1RTC", "dem": "DEM"}[modality]
    return rioxarray.open_rasterio(terramind(folder), chunks={"band": -1, "x": 112, "y": 112})


def _same_grid(a: xr.DataArray | xr.Dataset, b: xr.DataArray | xr.Dataset) -> bool:
    return grid_of(a) == grid_of(b)


def test_modality_of_lazy_arrays():
    assert lazy("s2l2a").copgen.modality == "s2l2a"  # 12 bands: only S2 L2A has 12
    dem = lazy("dem")
    assert dem.assign_attrs(modality="dem").copgen.modality == "dem"
    with pytest.raises(geocopgen.GeoCopGenError, match="cannot tell"):
        _ = dem.copgen.modality  # one band could be many things: the user must say


def test_translate_returns_a_new_georeferenced_array_and_leaves_the_input_lazy(tiny):
    s2 = lazy("s2l2a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dem = s2.copgen.translate("dem", model=tiny, **FAST)
    assert isinstance(s2.data, type(lazy("s2l2a").data)) and s2.chunks is not None
    assert _same_grid(dem, s2) and "spatial_ref" in dem.coords
    assert dem.rio.crs == s2.rio.crs and np.isnan(dem.rio.nodata)
    assert np.array_equal(dem["x"].values, s2["x"].values)
    assert dem.dims == ("band", "y", "x") and list(dem["band"].values) == ["elevation"]
    eager = s2.compute().copgen.translate("dem", model=tiny, **FAST)
    assert np.array_equal(dem.values, eager.values)  # lazy or not, one answer


def test_samples_as_bands_and_generate_on_the_arrays_grid(tiny):
    s2 = lazy("s2l2a")
    spread = s2.copgen.translate("s1rtc", samples=3, model=tiny, **FAST)
    assert list(spread["band"].values) == ["VV", "VH", "VV_std", "VH_std"]
    assert (spread.sel(band="VV_std") > 0).all()
    made = s2.copgen.generate("dem", model=tiny, **FAST)
    assert _same_grid(made, s2) and made.attrs["conditions"] == "none (unconditional)"


def test_dataset_translate_adds_a_variable_on_the_same_grid(tiny):
    ds = xr.Dataset(
        {
            "s2l2a": lazy("s2l2a").rename(band="band_s2"),
            "s1rtc": lazy("s1rtc").rename(band="band_s1"),
        }
    )
    assert ds.copgen.modalities == {"s2l2a": "s2l2a", "s1rtc": "s1rtc"}
    out = ds.copgen.translate("dem", model=tiny, **FAST)
    assert set(out.data_vars) == {"s2l2a", "s1rtc", "dem"} and "dem" not in ds
    assert out["dem"].dims == ("band", "y", "x") and out.sizes["y"] == 224
    assert _same_grid(out, ds) and out.rio.crs == ds.rio.crs
    generated = ds.copgen.generate("dem", cond=["s1rtc"], model=tiny, **FAST)
    assert generated["dem"].attrs["conditions"].startswith("s1rtc=")


def test_a_samples_result_stays_one_of_the_dataset_s_modalities(tiny):
    """Its mean and ``_std`` bands are the target's: it is listed, and its mean encoded."""
    ds = xr.Dataset({"s2l2a": lazy("s2l2a")})
    out = ds.copgen.translate("dem", samples=2, model=tiny, **FAST)
    assert list(out["dem"][out["dem"].dims[0]].values) == ["elevation", "elevation_std"]
    assert out.copgen.modalities == {"s2l2a": "s2l2a", "dem": "dem"}
    latents = out.copgen.encode(model=tiny, progress=False, device="cpu")
    assert set(latents.data_vars) == {"s2l2a", "dem"}
    mean = out["dem"].isel({out["dem"].dims[0]: [0]}).rename({out["dem"].dims[0]: "band"})
    alone = api.encode(mean.assign_attrs(modality="dem"), model=tiny, progress=False, device="cpu")
    np.testing.assert_array_equal(latents["dem"].values, alone.values)
    again = out.copgen.translate("s1rtc", model=tiny, **FAST)  # dem's mean conditions it too
    assert again["s1rtc"].attrs["conditions"].count("=") == 2


def test_encode_decode_round_trip_on_lazy_data(tiny):
    """A four-modality pipeline's latents (the bundled model is a COP-GEN model, whose groups
    encode() does not take yet): grid, attributes and the model's own single-chip numbers."""
    s1 = lazy("s1rtc")
    latents = s1.copgen.encode(model=tiny, modality="s1rtc", progress=False, device="cpu")
    assert latents.dims == ("latent", "y", "x") and latents.rio.crs == s1.rio.crs
    assert latents.rio.resolution() == (80.0, -80.0)
    back = latents.copgen.decode(model=tiny, progress=False, device="cpu")
    assert _same_grid(back, s1) and back.attrs["modality"] == "s1rtc"

