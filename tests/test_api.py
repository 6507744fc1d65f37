"""``geocopgen.api`` on paths, rasterio datasets and xarray objects, with a tiny random model:
the same answer whatever the input type, exact grids, generation on Major TOM cells and boxes,
encode/decode, and the engine's bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import rioxarray
import torch
import xarray as xr
from _translate_fixtures import one_torch_thread, save_tiny  # noqa: F401
from conftest import LANDSAT, PLACE, leftovers, terramind, write_variant
from rasterio.warp import calculate_default_transform, reproject

import geocopgen
from geocopgen import api
from geocopgen.errors import (
    CheckpointError,
    ConfigError,
    MissingCRSError,
    ModalityError,
    NoOverlapError,
    OutputError,
    ResamplingWarning,
    UnknownModalityError,
)
from geocopgen.io import grid_of, open_raster
from geocopgen.raster.grid import GeoBox, make_grid
from geocopgen.sources.majortom_grid import cell_utm_crs, product_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(steps=2, progress=False, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _grid(array: xr.DataArray) -> GeoBox:
    return grid_of(array)


def test_top_level_exports_and_model_cache(tiny):
    assert geocopgen.translate is api.translate and geocopgen.load_model is api.load_model
    a = api.load_model(tiny, device="cpu")
    assert api.load_model(str(tiny), device="cpu") is a  # cached per folder and device
    assert api.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="not a torch device"):
        api.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            api.resolve_device("cuda")


def test_load_model_picks_the_class_pipeline_json_names(tiny, tmp_path):
    """Issue 24: as diffusers reads ``model_index.json``, ``load_model`` takes the class from
    ``pipeline.json``'s ``_class_name`` (a folder from before that key: its ``kind``), and a
    class this geocopgen does not know is refused in one line naming the folder."""
    import json
    import shutil

    from geocopgen.copgen.model import CopgenModel
    from geocopgen.models.pipeline import CopGenPipeline
    from geocopgen.weights import DEFAULT_MODEL

    assert isinstance(api.load_model("default", device="cpu"), CopgenModel)
    assert isinstance(api.load_model(tiny, device="cpu"), CopGenPipeline)
    for source, name in ((tiny, "older_pipeline"), (DEFAULT_MODEL, "older_copgen")):
        older = shutil.copytree(source, tmp_path / name)
        config = json.loads((older / "pipeline.json").read_text())
        expected = config.pop("_class_name")
        (older / "pipeline.json").write_text(json.dumps(config))
        assert type(api.load_model(older, device="cpu")).__name__ == expected
    future = shutil.copytree(tiny, tmp_path / "future")
    config = json.loads((future / "pipeline.json").read_text())
    (future / "pipeline.json").write_text(json.dumps({**config, "_class_name": "LayoutModel"}))
    with pytest.raises(CheckpointError, match=r"future: pipeline.json names the class 'Layout"):
        api.load_model(future)


def test_everything_the_readme_and_guides_call_is_top_level():
    """``from geocopgen import open_raster`` (the README's xarray line) and its siblings."""
    from geocopgen import capabilities, decode, encode, generate, open_raster  # noqa: F401

    assert open_raster is geocopgen.io.open_raster and capabilities is api.capabilities
    assert set(geocopgen.__all__) >= {"open_raster", "capabilities", "translate", "load_model"}
    assert open_raster(terramind("S2L2A")).copgen.modality == "s2l2a"


def test_same_result_from_a_path_a_rasterio_dataset_and_lazy_xarray(tiny):
    path = terramind("S2L2A")
    from_path = api.translate(path, "s1rtc", model=tiny, **FAST)
    with rasterio.open(path) as dataset:
        from_dataset = api.translate(dataset, "s1rtc", model=tiny, **FAST)
    lazy = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 100, "x": 100})
    from_xarray = api.translate(lazy, "s1rtc", modality="s2l2a", model=tiny, **FAST)
    assert list(from_path["band"].values) == ["VV", "VH"] and from_path.dtype == np.float32
    assert np.array_equal(from_path.values, from_dataset.values)
    assert np.array_equal(from_path.values, from_xarray.values)
    with rasterio.open(path) as src:
        assert _grid(from_path) == make_grid(src.crs, src.transform, src.width, src.height)
    assert from_path.rio.crs == lazy.rio.crs and "spatial_ref" in from_path.coords
    assert from_path.attrs["target_modality"] == "s1rtc" and from_path.attrs["steps"] == "2"


def test_output_file_and_lazy_return(tiny, tmp_path):
    out = tmp_path / "dem.tif"
    lazy = api.translate(terramind("S2L2A"), "dem", output=out, model=tiny, **FAST)
    assert out.is_file() and lazy.chunks is not None  # reads from the file it wrote
    memory = api.translate(terramind("S2L2A"), "dem", model=tiny, **FAST)
    assert np.array_equal(lazy.values, memory.values)
    assert leftovers(tmp_path) == [out]


def test_several_conditions_and_one_in_another_crs(tiny, tmp_path):
    s1_wgs84 = tmp_path / "S1RTC_4326.tif"
    with rasterio.open(terramind("S1RTC")) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": "EPSG:4326", "transform": transform}
        profile.update(width=width, height=height, nodata=np.nan)
        with rasterio.open(s1_wgs84, "w", **profile) as dst:
            for band in (1, 2):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), dst_nodata=np.nan)
            dst.descriptions = ("VV", "VH")
    with pytest.warns(ResamplingWarning, match="S1RTC_4326"):
        dem = api.translate(terramind("S2L2A"), "dem", cond={"s1rtc": s1_wgs84}, model=tiny, **FAST)
    with rasterio.open(terramind("S2L2A")) as src:
        assert _grid(dem) == make_grid(src.crs, src.transform, src.width, src.height)
    # the reprojected S1 leaves a NaN rim, and the output is nodata there too
    assert np.isnan(dem.values).any() and np.isfinite(dem.values).mean() > 0.8


def test_grids_native_and_model(tiny):
    dem = api.translate(terramind("S2L2A"), "dem", grid="native", model=tiny, **FAST)
    assert dem.rio.resolution() == (30.0, -30.0) and dem.shape == (1, 75, 75)
    s1 = api.translate(terramind("S2L2A"), "s1rtc", grid="native", model=tiny, **FAST)
    assert s1.rio.resolution() == (10.0, -10.0) and s1.shape == (2, 224, 224)


def test_generate_on_a_major_tom_cell_and_a_bbox(tiny):
    cell = "0U_199R"
    dem = api.generate("dem", cell=cell, grid="native", model=tiny, **FAST)
    transform, width, height = product_transform(cell, resolution=30.0)
    assert _grid(dem) == make_grid(rasterio.crs.CRS.from_string(cell_utm_crs(cell)),
                                   transform, width, height)  # fmt: skip
    assert (width, height) == (356, 356) and np.isfinite(dem.values).all()
    assert dem.attrs["conditions"] == "none (unconditional)"
    box = api.generate("s1rtc", bbox=(15.0, -0.06, 15.02, -0.04), model=tiny, **FAST)
    assert box.rio.crs.to_epsg() == 32733 and box.rio.resolution() == (10.0, -10.0)
    assert box.rio.transform().c % 10 == 0  # snapped to the 10 m lattice


def test_generate_on_the_grid_of_a_raster_reproducible_per_seed(tiny):
    a = api.generate("dem", like=terramind("S2L2A"), model=tiny, seed=3, **FAST)
    b = api.generate("dem", like=terramind("S2L2A"), model=tiny, seed=3, **FAST)
    c = api.generate("dem", like=terramind("S2L2A"), model=tiny, seed=4, **FAST)
    assert np.array_equal(a.values, b.values) and not np.allclose(a.values, c.values)
    with pytest.raises(ConfigError, match="exactly one"):
        api.generate("dem", cell="0U_199R", bbox=(0, 0, 1, 1), model=tiny, **FAST)
    # any raster gives a place, modality or not (a Landsat quick-look is none of the four)
    with rasterio.open(LANDSAT) as src:
        expected = make_grid(src.crs, src.transform, src.width, src.height)
    assert api.grid_for(like=LANDSAT) == expected


def test_encode_decode_keep_the_georeference(tiny):
    dem = open_raster(terramind("DEM"))
    latents = api.encode(dem, model=tiny, progress=False, device="cpu")
    grid = grid_of(dem)
    assert latents.dims == ("latent", "y", "x") and latents.shape == (4, 28, 28)
    assert latents.rio.transform() == grid.transform @ rasterio.Affine.scale(8)
    assert latents.rio.crs == grid.crs and np.isfinite(latents.values).all()
    back = api.decode(latents, model=tiny, progress=False, device="cpu")
    assert grid_of(back) == grid and back.attrs["modality"] == "dem"


def test_capabilities(tiny):
    can = api.capabilities("s2l2a", tiny)
    assert can.translate_to == ("dem", "s1rtc", "s2l1c") and can.chip_size == 64


# --- bad input through the API --------------------------------------------------------------------
def test_bad_inputs_are_named_errors(tiny, tmp_path):
    no_crs = write_variant(terramind("S2L2A"), tmp_path / "S2L2A_nocrs.tif", crs=None)
    with pytest.raises(MissingCRSError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api.translate(no_crs, "dem", model=tiny, **FAST)
    with pytest.raises(UnknownModalityError):
        api.translate(LANDSAT, "dem", model=tiny, **FAST)
    with pytest.raises(ModalityError, match="already"):
        api.translate(terramind("DEM"), "dem", model=tiny, **FAST)
    other = terramind("S1RTC", place="637U_59R_1_3")
    with pytest.raises(NoOverlapError):
        api.translate(terramind("S2L2A"), "dem", cond=[other], model=tiny, **FAST)
    assert PLACE not in str(other)


def test_unwritable_output_fails_before_any_model_work(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    pipeline = api.load_model(tiny, device="cpu")

    def no_work(*args, **kwargs):
        raise AssertionError("the model ran before the output was checked")

    monkeypatch.setattr(pipeline, "predict_model_output", no_work)
    for out in (blocker / "out.tif", tmp_path):
        with pytest.raises(OutputError):
            api.translate(terramind("S2L2A"), "dem", output=out, model=pipeline, **FAST)
    copy = write_variant(terramind("S2L2A"), tmp_path / "S2L2A.tif")
    with pytest.raises(OutputError, match="input itself"):
        api.translate(copy, "dem", output=copy, model=pipeline, **FAST)
    assert leftovers(tmp_path) == [copy, blocker]
