"""No seams at chip borders: the bundled model translates a 700 px crop of the Virginia L1C scene
(7 km: 5 x 5 chips of 1920 m) to a DEM on its native 30 m grid, and neighbouring pixels differ
no more across the canvas's chip borders than across the other edges of its codec's 8 x 8 px
patches (a patch codec decodes each patch alone, so every patch edge is a candidate step; chip
borders lie on patch edges too). Chips denoised without overlap (each alone) show seams."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _translate_fixtures import BUNDLED, one_torch_thread  # noqa: F401
from conftest import VIRGINIA

from geocopgen import api
from geocopgen.io import model_grid, open_raster
from geocopgen.translation.groups import GroupLayout
from geocopgen.translation.seams import chip_borders

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 6
PATCH = 8  # the DEM codec's patch, in 30 m pixels


@pytest.fixture(scope="module")
def crop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Virginia folder carries no offset metadata
        scene = open_raster(VIRGINIA)
    return open_raster(scene.isel(y=slice(600, 1300), x=slice(600, 1300)))


def _edge_steps(image: np.ndarray, rows: list[int], cols: list[int]) -> float:
    """Mean |difference| between the pixels either side of the given row and column edges."""
    steps = [np.abs(image[r] - image[r - 1]) for r in rows]
    steps += [np.abs(image[:, c] - image[:, c - 1]) for c in cols]
    return float(np.nanmean(np.concatenate(steps)))


def _ratio(crop, **options) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dem = api.translate(crop, "dem", model=BUNDLED, steps=STEPS, progress=False,
                            device="cpu", grid="native", **options)  # fmt: skip
    overlap = options.get("overlap")
    layout = GroupLayout.for_scene(
        model_grid(crop), ["DEM_DEM"], None if overlap is None else overlap * 10.0
    )
    rows, cols = chip_borders(layout.canvases["DEM_DEM"])
    assert len(rows) >= 4 and len(cols) >= 4  # several chips wide: real borders to look at
    image = dem.sel(band="elevation").values
    h, w = image.shape
    other_rows = [r for r in range(PATCH, h, PATCH) if r not in rows]
    other_cols = [c for c in range(PATCH, w, PATCH) if c not in cols]
    return _edge_steps(image, rows, cols) / _edge_steps(image, other_rows, other_cols)


def test_chip_borders_are_as_smooth_as_the_other_patch_edges(crop):
    seamless = _ratio(crop)
    tiles = _ratio(crop, overlap=0)
    print(f"seam ratio: seamless {seamless:.3f}, chips without overlap {tiles:.3f}")
    assert seamless <= 1.2, f"seamless seam ratio {seamless:.3f}"
    assert tiles >= 1.3 * seamless, f"no overlap {tiles:.3f} vs seamless {seamless:.3f}"
