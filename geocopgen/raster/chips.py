"""The chip grid: overlapping fixed-size windows that cover a raster completely, and their blend
weights.

* Chips are ``chip_size`` px squares (256 by default) placed every ``chip_size - overlap`` px.
* The last row/column of chips is *snapped inward* to end exactly at the raster edge, so every
  chip is full of real pixels and nothing is zero-padded; full coverage is asserted, no remainder
  is ever dropped.
* A raster smaller than a chip along an axis (the TerraMind tiles are 224 px) gets one chip on that
  axis whose data is *reflection-padded* (bottom/right) to ``chip_size``; outputs are cropped back.
* The default overlap is 32 px: 1/8 of a chip, i.e. 4 latent pixels of the 8x autoencoders, enough
  for raised-cosine blending to hide seams, for 31% more chip work than no overlap
  ((256/224)^2); 64 px would cost 78%.

Blend weights are separable raised-cosine ramps over ``overlap`` px on every chip side that has a
neighbour (none at the raster edge), strictly positive everywhere, so every pixel a chip covers
gets weight and the normalised blend is exact for identical inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.windows import Window

from geocopgen.errors import GridError
from geocopgen.raster.grid import GeoBox, grid_of

DEFAULT_CHIP_SIZE = 256
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class Chip:
    """One chip: its place in the chip grid, its window on the raster and its transform.

    ``window`` is the part of the raster the chip covers (smaller than ``size`` only when the
    raster is); ``pad`` = (bottom, right) reflection padding that brings the data to ``size``.
    ``transform`` is the affine of the chip array's top-left pixel (padding extends it down/right).
    """

    row: int
    col: int
    window: Window
    transform: Affine
    size: int
    pad: tuple[int, int] = (0, 0)
    edges: tuple[bool, bool, bool, bool] = (False, False, False, False)  # top, bottom, left, right

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the window, for ``array[:, rows, cols]``."""
        w = self.window
        return (
            slice(int(w.row_off), int(w.row_off + w.height)),
            slice(int(w.col_off), int(w.col_off + w.width)),
        )


@dataclass(frozen=True)
class ChipData:
    """A chip with its pixels: ``data`` (band, size, size) float32, ``valid`` (size, size) bool.

    ``valid`` is True where every band is finite *and* the pixel is real (not padding).
    """

    chip: Chip
    data: np.ndarray
    valid: np.ndarray

    @property
    def window(self) -> Window:
        return self.chip.window

    @property
    def observed(self) -> np.ndarray:
        """(size, size) bool: real pixels where at least one band is finite."""
        return np.isfinite(self.data).any(axis=0) & self.real

    @property
    def real(self) -> np.ndarray:
        """(size, size) bool: True on the raster, False on reflection padding."""
        real = np.zeros(self.valid.shape, dtype=bool)
        real[: int(self.chip.window.height), : int(self.chip.window.width)] = True
        return real

    @property
    def empty(self) -> bool:
        """True if the chip holds no finite value at all (such chips are skipped)."""
        return not bool(np.isfinite(self.data).any())

    @property
    def transform(self) -> Affine:
        return self.chip.transform

    def crop(self, array: np.ndarray) -> np.ndarray:
        """A chip-sized output (…, size, size) cut back to the chip's window (drops padding)."""
        h, w = int(self.chip.window.height), int(self.chip.window.width)
        return array[..., :h, :w]


def chip_offsets(length: int, chip_size: int, overlap: int) -> list[int]:
    """Start offsets along one axis: every ``chip_size - overlap``, the last snapped inward."""
    if length <= chip_size:
        return [0]
    stride = chip_size - overlap
    offsets = list(range(0, length - chip_size, stride))
    offsets.append(length - chip_size)
    return offsets


class ChipGrid:
    """Overlapping chips over a ``height`` x ``width`` raster (row-major iteration).

    The chip arithmetic needs only the size; built :meth:`from_grid` (or :meth:`from_array`) it
    also knows the scene's GeoBox, and :meth:`grid_of` gives each chip's as the scene's sub-grid.
    """

    def __init__(
        self,
        height: int,
        width: int,
        transform: Affine | None = None,
        *,
        chip_size: int = DEFAULT_CHIP_SIZE,
        overlap: int = DEFAULT_OVERLAP,
    ):
        if chip_size < 2:  # a latent chip of COP-GEN's 60 m group is 4 cells
            raise GridError(f"chip_size must be at least 2 px, got {chip_size}")
        if not 0 <= overlap <= chip_size // 2:
            raise GridError(
                f"overlap must be from 0 to half the chip size ({chip_size // 2}), got {overlap}"
            )
        if height < 1 or width < 1:
            raise GridError(f"cannot chip an empty raster ({width}x{height} px)")
        self.height, self.width = int(height), int(width)
        self.transform = transform if transform is not None else Affine.identity()
        self.grid: GeoBox | None = None
        self.chip_size, self.overlap = int(chip_size), int(overlap)
        self.row_offsets = chip_offsets(self.height, chip_size, overlap)
        self.col_offsets = chip_offsets(self.width, chip_size, overlap)
        self._assert_coverage()

    @classmethod
    def from_grid(cls, grid: GeoBox, **kwargs: int) -> ChipGrid:
        """The chips of a scene grid; each chip's grid is then ``grid_of(chip)``."""
        chips = cls(grid.height, grid.width, grid.affine, **kwargs)
        chips.grid = grid
        return chips

    @classmethod
    def from_array(cls, array: xr.DataArray, **kwargs: int) -> ChipGrid:
        """The chips of an array's grid (:func:`~geocopgen.raster.grid.grid_of`); an array with
        no CRS still gets the chip arithmetic, on its own transform, and no chip GeoBoxes."""
        if array.rio.crs is None:
            return cls(array.sizes["y"], array.sizes["x"], array.rio.transform(), **kwargs)
        return cls.from_grid(grid_of(array), **kwargs)

    def grid_of(self, chip: Chip) -> GeoBox:
        """The chip's GeoBox: the scene grid's sub-grid of the chip's window (padding excluded)."""
        if self.grid is None:
            raise GridError("this chip grid was built from a size only; use ChipGrid.from_grid")
        rows, cols = chip.slices
        return self.grid[rows, cols]

    @property
    def stride(self) -> int:
        return self.chip_size - self.overlap

    @property
    def shape(self) -> tuple[int, int]:
        """(chip rows, chip columns)."""
        return (len(self.row_offsets), len(self.col_offsets))

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def __iter__(self) -> Iterator[Chip]:
        """Row-major, except that a snapped last chip row is interleaved, column by column, with
        the row before it: both overlap one band of output tiles, which can then be finished
        (and freed) chip by chip instead of after a whole row."""
        n_rows, n_cols = self.shape
        groups = [[i] for i in range(n_rows)]
        if n_rows >= 2 and self.row_offsets[-1] - self.row_offsets[-2] != self.stride:
            groups[-2:] = [[n_rows - 2, n_rows - 1]]
        for group in groups:
            for j in range(n_cols):
                for i in group:
                    yield self.chip(i, j)

    def chip(self, i: int, j: int) -> Chip:
        r0, c0 = self.row_offsets[i], self.col_offsets[j]
        h = min(self.chip_size, self.height)
        w = min(self.chip_size, self.width)
        window = Window(c0, r0, w, h)
        edges = (i == 0, i == self.shape[0] - 1, j == 0, j == self.shape[1] - 1)
        return Chip(
            row=i,
            col=j,
            window=window,
            transform=self.transform @ Affine.translation(c0, r0),
            size=self.chip_size,
            pad=(self.chip_size - h, self.chip_size - w),
            edges=edges,
        )

    def _assert_coverage(self) -> None:
        for offsets, length in ((self.row_offsets, self.height), (self.col_offsets, self.width)):
            covered = 0
            for off in offsets:
                if off > covered:
                    raise AssertionError(f"chip grid leaves a gap at pixel {covered}")
                covered = max(covered, off + min(self.chip_size, length))
            if covered != length:
                raise AssertionError(f"chip grid covers {covered} of {length} px")

    # --- blending ------------------------------------------------------------------------------
    def weights(self, chip: Chip) -> np.ndarray:
        """Blend weights (float64, window-shaped): raised cosine on sides with a neighbour."""
        h, w = int(chip.window.height), int(chip.window.width)
        top, bottom, left, right = chip.edges
        wy = _ramp(h, self.overlap, not top, not bottom)
        wx = _ramp(w, self.overlap, not left, not right)
        return np.outer(wy, wx)


@lru_cache(maxsize=64)
def _ramp_cached(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    ramp = np.ones(n, dtype=np.float64)
    if overlap > 0:
        k = min(overlap, n // 2)
        # 0.5 - 0.5 cos(pi (d + 0.5) / overlap), d = distance from the chip edge: > 0 at d = 0.
        up = 0.5 - 0.5 * np.cos(math.pi * (np.arange(k) + 0.5) / overlap)
        if start:
            ramp[:k] = np.minimum(ramp[:k], up)
        if end:
            ramp[n - k :] = np.minimum(ramp[n - k :], up[::-1])
    ramp.setflags(write=False)
    return ramp


def _ramp(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    return _ramp_cached(n, overlap, start, end)


def read_chip(array: xr.DataArray, chip: Chip) -> ChipData:
    """Read one chip of a ModalityArray (one windowed read), reflection-padded if needed."""
    rows, cols = chip.slices
    return _chip_data(chip, _compute(array.data[:, rows, cols]))


def read_chips(array: xr.DataArray, chips: Sequence[Chip]) -> list[ChipData]:
    """Read several chips (a row of them, say) with one windowed read of their bounding box.

    Neighbouring chips overlap, and a dask array that is a slice of another (a crop of an opened
    raster, a clipped rioxarray array) computes every chunk a read touches in full, because dask
    fuses only one level of slicing into the reader. One read per row of chips computes each chunk
    a few times instead of once per chip; on a file-backed array it reads each pixel of the row
    once instead of once per overlapping chip.
    """
    if not chips:
        return []
    windows = [c.window for c in chips]
    r0 = min(int(w.row_off) for w in windows)
    c0 = min(int(w.col_off) for w in windows)
    r1 = max(int(w.row_off + w.height) for w in windows)
    c1 = max(int(w.col_off + w.width) for w in windows)
    block = _compute(array.data[:, r0:r1, c0:c1])
    out = []
    for chip in chips:
        rows, cols = chip.slices
        part = block[:, rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
        out.append(_chip_data(chip, part))
    return out


def _compute(data: Any) -> np.ndarray:
    """A (possibly dask) window as float32 numpy, computed in this thread."""
    values = np.asarray(data.compute(scheduler="synchronous") if hasattr(data, "compute") else data)
    return values.astype(np.float32, copy=False)


def _chip_data(chip: Chip, values: np.ndarray) -> ChipData:
    valid = np.isfinite(values).all(axis=0)
    bottom, right = chip.pad
    if bottom or right:
        values = _reflect(values, bottom, right)
        valid = np.pad(valid, ((0, bottom), (0, right)), constant_values=False)
    return ChipData(chip, values, valid)


def _reflect(values: np.ndarray, bottom: int, right: int) -> np.ndarray:
    mode = "reflect" if min(values.shape[1:]) > 1 else "edge"
    return np.pad(values, ((0, 0), (0, bottom), (0, right)), mode=mode)


def iter_chips(array: xr.DataArray, grid: ChipGrid) -> Iterator[ChipData]:
    """Chips of ``array`` with their pixels, row-major; check ``.empty`` to skip nodata chips."""
    for chip in grid:
        yield read_chip(array, chip)
