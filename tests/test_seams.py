"""No seams at chip borders: the bundled model translates a 700 px crop of the Virginia L1C scene
(3 x 3 chips of 256 px) to a DEM, and neighbouring pixels differ no more across chip borders than
elsewhere. Denoising the chips independently (tiles, no blending) shows clear seams."""

from __future__ import annotations

import warnings

import pytest
import rasterio
from _translate_fixtures import BUNDLED, one_torch_thread  # noqa: F401
from conftest import VIRGINIA

from geocopgen import api
from geocopgen.io import grid_of, open_raster
from geocopgen.translation import CanvasTranslator, TranslateOptions, translate_to_file
from geocopgen.translation.seams import chip_borders, seam_ratio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 4


@pytest.fixture(scope="module")
def crop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Virginia folder carries no offset metadata
        scene = open_raster(VIRGINIA)
    return open_raster(scene.isel(y=slice(600, 1300), x=slice(600, 1300)))


def _ratio(crop, tmp_path, **options) -> float:
    pipeline = api.load_model(BUNDLED, device="cpu")
    opts = TranslateOptions(steps=STEPS, progress=False, **options)
    translator = CanvasTranslator(pipeline, "dem", opts)
    grid = grid_of(crop)
    out = tmp_path / "dem.tif"
    translate_to_file(translator, grid, {"s2l1c": crop}, out, overwrite=True)  # written twice
    rows, cols = chip_borders(translator.layout(grid, ["s2l1c"]))
    assert len(rows) >= 4 and len(cols) >= 4  # several chips wide: real borders to look at
    with rasterio.open(out) as src:
        return seam_ratio(src.read(1), rows, cols)


def test_chip_borders_are_as_smooth_as_the_interior(crop, tmp_path):
    seamless = _ratio(crop, tmp_path)
    tiles = _ratio(crop, tmp_path, seamless=False, overlap=0)
    print(f"seam ratio: seamless {seamless:.3f}, independent tiles {tiles:.3f}")
    assert seamless <= 1.1, f"seamless seam ratio {seamless:.3f}"
    assert tiles >= 2.0 * seamless, f"tiles {tiles:.3f} vs seamless {seamless:.3f}"
