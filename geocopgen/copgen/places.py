"""Training places in the COP-GEN layout: every slot of every modality a place has, in model
units on that slot's grid, so that a 1920 m chip cut at any 60 m step means the same ground in
every slot.

A place is whatever set of co-registered rasters the data hold: all five modalities for a
TerraMind tile, S1 and S2 L1C for the Sen1Floods11 chip, a DEM alone for a mountain. The slots a
place lacks are simply absent; the training objective leaves them out
(:mod:`geocopgen.copgen.train`).

The pixels go through exactly what translation does to a condition
(:func:`~geocopgen.copgen.units.to_model_units` after :func:`~geocopgen.io.reproject`
onto ``at_resolution(scene, resolution)``), so what the model learns from is what it is given.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import torch
import xarray as xr
from pyproj import Transformer

from geocopgen.copgen.layout import (
    CHIP_GROUND_SIZE_M,
    COPGEN_SLOTS,
    MODALITY_SLOTS,
    CopgenSlot,
    registry_band,
)
from geocopgen.copgen.units import to_model_units
from geocopgen.io.align import model_grid, reproject
from geocopgen.raster.grid import GeoBox, at_resolution, pixel_size, rasterio_crs

#: Chip origins are on this step (metres): the coarsest slot pixel, so every slot's chip starts
#: on a whole pixel of its own grid.
CHIP_STEP_M = 60.0
#: A slot whose chip has fewer valid pixels than this fraction is left out of that sample.
MIN_VALID = 0.9
IMAGE_SLOTS: dict[str, CopgenSlot] = {s.key: s for s in COPGEN_SLOTS if s.kind == "image"}


@dataclass
class SlotPlace:
    """One place's slots: ``pixels[key]`` ``(C, H, W)`` float32 model units (invalid at -1) on
    the slot's grid, ``valid[key]`` ``(H, W)`` bool; ``scene`` is the 10 m grid they derive from.
    """

    name: str
    scene: GeoBox
    pixels: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]
    when: date | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities present, in :data:`MODALITY_SLOTS` order."""
        return tuple(m for m, keys in MODALITY_SLOTS.items() if keys[0] in self.pixels)

    def chip_origins(self) -> list[tuple[int, int]]:
        """Every chip origin (10 m row, col, on the 60 m step) where each slot's chip fits."""
        shapes = {key: tuple(x.shape[1:]) for key, x in self.pixels.items()}
        return chip_origins(self.scene, shapes)

    def window(self, key: str, row: int, col: int) -> tuple[slice, slice]:
        """Slot ``key``'s chip window on its own grid for the 10 m origin (row, col)."""
        s = IMAGE_SLOTS[key]
        ratio = pixel_size(self.scene)[0] / s.resolution
        r, c = round(row * ratio), round(col * ratio)
        return slice(r, r + s.chip_px), slice(c, c + s.chip_px)

    def chip(self, row: int, col: int) -> dict[str, torch.Tensor]:
        """The slots' chips at 10 m origin (row, col), each slot whose chip is valid enough."""
        out = {}
        for key, x in self.pixels.items():
            window = self.window(key, row, col)
            if self.valid[key][window].float().mean() >= MIN_VALID:
                out[key] = x[(slice(None), *window)]
        return out

    def chip_centre_lonlat(self, row: int, col: int) -> tuple[float, float]:
        """Longitude and latitude of the chip's centre (what the lat/lon token encodes)."""
        t = self.scene.affine
        half = CHIP_GROUND_SIZE_M / 2
        x = t.c + col * t.a + half
        y = t.f + row * t.e - half
        lon, lat = self._to_lonlat.transform(x, y)
        return float(lon), float(lat)

    @functools.cached_property
    def _to_lonlat(self) -> Transformer:
        """The scene CRS → lon/lat transformer, built once (training asks for it every chip)."""
        return Transformer.from_crs(rasterio_crs(self.scene), "EPSG:4326", always_xy=True)


def slot_grid(scene: GeoBox, key: str) -> GeoBox:
    """Image slot ``key``'s grid: the scene's, or derived from it at the slot's resolution."""
    res = IMAGE_SLOTS[key].resolution
    return scene if np.isclose(pixel_size(scene)[0], res) else at_resolution(scene, res)


def chip_origins(
    scene: GeoBox, shapes: Mapping[str, tuple[int, int]], stride_m: float = CHIP_STEP_M
) -> list[tuple[int, int]]:
    """Chip origins (10 m row, col) every ``stride_m`` (a multiple of the 60 m step) where
    each slot's chip fits in its grid of ``shapes[key]`` pixels; a stride above the step adds
    the last fitting origin, so chips reach the far edges."""
    step = round(CHIP_STEP_M / pixel_size(scene)[0])
    rows = cols = None
    for key, (height, width) in shapes.items():
        ratio = IMAGE_SLOTS[key].resolution / pixel_size(scene)[0]
        chip = IMAGE_SLOTS[key].chip_px
        r = int((height - chip) * ratio)
        c = int((width - chip) * ratio)
        rows = r if rows is None else min(rows, r)
        cols = c if cols is None else min(cols, c)
    if rows is None or rows < 0 or cols < 0:
        return []
    stride = step * max(1, round(stride_m / CHIP_STEP_M))
    along = [_starts(rows, step, stride), _starts(cols, step, stride)]
    return [(i, j) for i in along[0] for j in along[1]]


def _starts(limit: int, step: int, stride: int) -> list[int]:
    starts = list(range(0, limit + 1, stride))
    last = limit // step * step
    return starts if starts[-1] == last else [*starts, last]


def slot_place(
    name: str,
    arrays: Mapping[str, xr.DataArray],
    *,
    when: date | None = None,
    scene: GeoBox | None = None,
) -> SlotPlace:
    """A place from co-registered modality arrays in physical units (geocopgen's readers).

    ``scene`` defaults to the first array's 10 m UTM working grid. Sentinel-2 goes in as
    reflectance x 10 000 (the bundled model's ``s2_dn="reflectance"``).
    """
    if not arrays:
        raise ValueError(f"place {name}: no modality arrays")
    scene = scene or model_grid(next(iter(arrays.values())))
    pixels, valid = {}, {}
    for modality, array in arrays.items():
        for key, (x, ok) in slot_pixels(modality, array, scene):
            pixels[key], valid[key] = x, ok
    return SlotPlace(name, scene, pixels, valid, when)


def slot_pixels(
    modality: str, array: xr.DataArray, scene: GeoBox
) -> Iterator[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Each slot of ``modality``: its pixels in model units on its grid, and their validity."""
    for key in MODALITY_SLOTS[modality]:
        s = IMAGE_SLOTS[key]
        grid = slot_grid(scene, key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            on_grid = reproject(array, grid, warn=False)
        bands = [registry_band(s, b) for b in s.bands]
        values = np.asarray(on_grid.sel(band=bands).values, dtype=np.float32)
        ok = torch.from_numpy(np.isfinite(values).all(axis=0))
        yield key, (to_model_units(key, values[None], 0)[0].contiguous(), ok)


__all__ = [
    "CHIP_STEP_M",
    "MIN_VALID",
    "SlotPlace",
    "chip_origins",
    "slot_grid",
    "slot_pixels",
    "slot_place",
]
