"""No seams at chip borders: the bundled model translates a 700 px crop of the Virginia L1C scene
(7 km: 5 x 5 chips of 1920 m) to a DEM, and neighbouring pixels differ no more across the DEM
canvas's chip borders than elsewhere. Chips denoised without overlap (each alone) show seams."""

from __future__ import annotations

import warnings

import pytest
from _translate_fixtures import BUNDLED, one_torch_thread  # noqa: F401
from conftest import VIRGINIA

from geocopgen import api
from geocopgen.io import model_grid, open_raster
from geocopgen.translation.groups import GroupLayout
from geocopgen.translation.seams import chip_borders, seam_ratio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 6


@pytest.fixture(scope="module")
def crop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Virginia folder carries no offset metadata
        scene = open_raster(VIRGINIA)
    return open_raster(scene.isel(y=slice(600, 1300), x=slice(600, 1300)))


def _ratio(crop, **options) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dem = api.translate(crop, "dem", model=BUNDLED, steps=STEPS, progress=False,
                            device="cpu", **options)  # fmt: skip
    overlap = options.get("overlap")
    layout = GroupLayout.for_scene(
        model_grid(crop), ["DEM_DEM"], None if overlap is None else overlap * 10.0
    )
    rows, cols = chip_borders(layout.canvases["DEM_DEM"])
    assert len(rows) >= 4 and len(cols) >= 4  # several chips wide: real borders to look at
    return seam_ratio(dem.sel(band="elevation").values, rows, cols)


def test_chip_borders_are_as_smooth_as_the_interior(crop):
    seamless = _ratio(crop)
    tiles = _ratio(crop, overlap=0)
    print(f"seam ratio: seamless {seamless:.3f}, chips without overlap {tiles:.3f}")
    assert seamless <= 1.15, f"seamless seam ratio {seamless:.3f}"
    assert tiles >= 1.5 * seamless, f"no overlap {tiles:.3f} vs seamless {seamless:.3f}"
