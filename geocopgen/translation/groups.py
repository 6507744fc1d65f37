"""One latent canvas per resolution group, all derived from one scene grid and one chip grid on
the ground.

COP-GEN's slots see the same 1920 m chip at different resolutions: 192 px at 10 m, 96 px at
20 m, 64 px for the 30 m DEM, 32 px at 60 m, each 8x downsampled into 24, 12, 8 or 4 latent cells
(80, 160, 240 or 480 m a cell). For a chip to mean the same ground in every slot, the chips are
laid out on the ground in units of the coarsest cell (480 m: a chip is 4 units, the default
overlap 1 unit, a quarter of a chip), and every canvas covers the same number of units. Because
:func:`~geocopgen.raster.chips.chip_offsets` scales exactly (``m * offsets(n, 4, 1) ==
offsets(m n, 4 m, m)``), the chips of each canvas, laid out by its own
:class:`~geocopgen.translation.canvas.CanvasLayout`, are the same ground chips, snapped last chip
included. Each group's pixel grid is ``at_resolution(scene, resolution)``: the scene's origin,
every pixel covered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from geocopgen.copgen.layout import CHIP_GROUND_SIZE_M, CopgenSlot, slot
from geocopgen.errors import GridError
from geocopgen.raster.grid import GeoBox, at_resolution, pixel_size, rasterio_crs
from geocopgen.translation.canvas import CanvasLayout

#: The ground unit chips are laid out in: the coarsest latent cell (60 m x 8).
GROUND_UNIT_M = 480.0
#: Chip side in ground units.
CHIP_UNITS = round(CHIP_GROUND_SIZE_M / GROUND_UNIT_M)
#: Default overlap between neighbouring chips, in ground units (a quarter of a chip).
DEFAULT_OVERLAP_UNITS = 1
#: Pixels per latent cell in every COP-GEN VAE.
DOWNSAMPLING = 8


@dataclass(frozen=True)
class GroupLayout:
    """The canvases of a scene, one per image slot, over the same ground chips.

    ``scene`` is the working grid (10 m); ``units`` the canvas extent in ground units (rows,
    cols); ``canvases`` maps slot keys to their :class:`CanvasLayout` (pixel grid at the slot's
    resolution, latent canvas, latent and pixel chips).
    """

    scene: GeoBox
    units: tuple[int, int]
    overlap_units: int
    canvases: Mapping[str, CanvasLayout]

    @classmethod
    def for_scene(
        cls, scene: GeoBox, slots: Iterable[str], overlap_m: float | None = None
    ) -> GroupLayout:
        """The layout of ``scene`` for the image ``slots`` (keys); ``overlap_m`` defaults to a
        quarter of a chip and must be a whole number of ground units (0, 480 or 960 m)."""
        overlap_m = DEFAULT_OVERLAP_UNITS * GROUND_UNIT_M if overlap_m is None else overlap_m
        units_overlap = overlap_m / GROUND_UNIT_M
        if not float(units_overlap).is_integer() or not 0 <= units_overlap <= CHIP_UNITS // 2:
            raise GridError(
                f"overlap must be 0, {GROUND_UNIT_M:g} or {2 * GROUND_UNIT_M:g} m (whole "
                f"{GROUND_UNIT_M:g} m units, at most half a {CHIP_GROUND_SIZE_M:g} m chip), "
                f"got {overlap_m:g}"
            )
        rx, ry = pixel_size(scene)
        units = (
            max(math.ceil(scene.height * ry / GROUND_UNIT_M - 1e-9), CHIP_UNITS),
            max(math.ceil(scene.width * rx / GROUND_UNIT_M - 1e-9), CHIP_UNITS),
        )
        overlap = int(units_overlap)
        canvases = {key: _canvas(scene, slot(key), units, overlap) for key in dict.fromkeys(slots)}
        layout = cls(scene, units, overlap, canvases)
        layout.check_chips_agree()
        return layout

    @property
    def chip_shape(self) -> tuple[int, int]:
        """(chip rows, chip cols): the same in every canvas."""
        return next(iter(self.canvases.values())).latent_chips.shape

    def check_chips_agree(self) -> None:
        """Every canvas's chip (i, j) covers the same ground (the invariant this module keeps)."""
        bounds = None
        for key, canvas in self.canvases.items():
            chips = canvas.latent_chips
            cell = canvas.factor * pixel_size(canvas.grid)[0]
            mine = [(c.row, c.col, c.window.row_off * cell, c.window.col_off * cell) for c in chips]
            if bounds is None:
                bounds = mine
            elif not np.allclose(np.array(mine), np.array(bounds)):
                raise GridError(f"the {key} canvas's chips do not lie on the other canvases' chips")

    def chip_centres_lonlat(self) -> np.ndarray:
        """(chip rows, chip cols, 2) longitude and latitude of each chip's centre, in degrees:
        what COP-GEN's lat/lon token is computed from (per chip, from the grid)."""
        canvas = next(iter(self.canvases.values()))
        chips = canvas.latent_chips
        cell = canvas.factor * pixel_size(canvas.grid)[0]
        t = self.scene.affine
        half = CHIP_GROUND_SIZE_M / 2
        rows, cols = chips.shape
        xs = np.array([t.c + chips.col_offsets[j] * cell + half for j in range(cols)])
        ys = np.array([t.f - chips.row_offsets[i] * cell - half for i in range(rows)])
        gx, gy = np.meshgrid(xs, ys)
        to_lonlat = Transformer.from_crs(rasterio_crs(self.scene), "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(gx, gy)
        return np.stack([lon, lat], axis=-1)


def _canvas(scene: GeoBox, s: CopgenSlot, units: tuple[int, int], overlap: int) -> CanvasLayout:
    if s.kind != "image" or s.resolution is None:
        raise GridError(f"{s.key} is a scalar slot: it has no canvas")
    res = s.resolution
    grid = scene if np.isclose(pixel_size(scene)[0], res) else at_resolution(scene, res)
    cells_per_unit = round(GROUND_UNIT_M / (DOWNSAMPLING * res))
    side = s.latent_shape[1]
    return CanvasLayout(
        grid,
        factor=DOWNSAMPLING,
        chip=side,
        overlap=overlap * cells_per_unit,
        extent=(units[0] * cells_per_unit, units[1] * cells_per_unit),
    )
