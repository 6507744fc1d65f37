"""No seams at chip borders: the bundled model's engine translates a 700 px crop of the Virginia
L1C scene (7 km: 5 x 5 chips of 1920 m) to a DEM on its native 30 m grid, and neighbouring
pixels differ no more across the canvas's chip borders than across the other edges of its
codec's 8 x 8 px patches (a patch codec decodes each patch alone, so every patch edge is a
candidate step; chip borders lie on patch edges too). Chips denoised without overlap (each
alone) show seams.

The backbone is replaced by one that predicts a single height per chip (the chip's mean L1C
latent): the most seam-prone prediction there is, and one that does not depend on how well the
shipped backbone was trained. The shipped one barely changes its first guess (``strength``
0.02), and from pure noise its output is patch-level noise, so chip borders would not stand out
even without overlap and the check would prove nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _translate_fixtures import BUNDLED, one_torch_thread  # noqa: F401
from conftest import VIRGINIA

from geocopgen import api
from geocopgen.copgen.model import CopgenModel
from geocopgen.io import model_grid, open_raster
from geocopgen.models.uvit import BackboneOutput
from geocopgen.translation.groups import GroupLayout
from geocopgen.translation.seams import chip_borders

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 6
PATCH = 8  # the DEM codec's patch, in 30 m pixels


@pytest.fixture(scope="module")
def chip_levels() -> CopgenModel:
    """The bundled model with a backbone that predicts, for every generated slot, a clean latent
    whose mean channel is the chip's mean L1C latent and whose other channels are zero."""
    model = CopgenModel.from_pretrained(BUNDLED)
    model.first_guess, model.prediction, model.strength = None, "sample", 1.0

    def forward(inputs, times, return_dict=True):
        level = inputs["S2L1C_B02_B03_B04_B08"][:, :1].mean(dim=(2, 3), keepdim=True)
        out = {}
        for key, t in times.items():
            if float(t.max()) > 0:  # generated
                z = torch.zeros_like(inputs[key])
                z[:, :1] = level
                out[key] = z
        return BackboneOutput(sample=out)

    model.backbone.forward = forward
    return model


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


def _ratio(crop, model: CopgenModel, **options) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dem = api.translate(crop, "dem", model=model, steps=STEPS, progress=False,
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


def test_chip_borders_are_as_smooth_as_the_other_patch_edges(crop, chip_levels):
    seamless = _ratio(crop, chip_levels)
    tiles = _ratio(crop, chip_levels, overlap=0)
    print(f"seam ratio: seamless {seamless:.3f}, chips without overlap {tiles:.3f}")
    assert seamless <= 1.2, f"seamless seam ratio {seamless:.3f}"
    assert tiles >= 1.3 * seamless, f"no overlap {tiles:.3f} vs seamless {seamless:.3f}"
