"""The latent canvas of a scene: its size, the chips that tile it, and its seeded initial noise.

A raster of ``H x W`` px has a latent canvas of ``ceil(H/f) x ceil(W/f)`` cells (``f`` = the
autoencoders' downsampling, 8), and at least one backbone chip (``latent_size`` cells, 32 for
256 px) along each axis; a smaller raster's canvas extends past its bottom/right edge, where the
conditions are reflection-padded as the raster engine pads a small tile.

Two chip grids describe one scene, both :class:`~geocopgen.raster.chips.ChipGrid` values:

* ``latent_chips``: backbone-sized chips on the canvas (overlap in cells), whose raised-cosine
  weights blend the per-chip noise predictions at every denoising step (MultiDiffusion) and the
  per-chip encodings of the conditions;
* ``pixel_chips``: the raster engine's chips on the raster itself (same size and overlap in px),
  which are decoded one by one and streamed through the mosaic writer. A pixel chip that does not
  start on a latent cell (the last, snapped chip of a raster whose size is not a multiple of 8)
  decodes the one extra latent row/column that covers it and is cropped.

The initial noise is seeded per position: the canvas is cut into blocks of ``NOISE_BLOCK`` cells
anchored in the CRS's own pixel lattice (pixel ``(0, 0)`` at the CRS origin), and every block of
every sample draws from a generator seeded with ``(seed, sample, block row, block column)``. Two
rasters on one 10 m lattice whose origins differ by a multiple of 8 px start from identical noise
wherever they overlap, so a region's noise does not depend on the raster's extent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from affine import Affine
from rasterio.windows import Window

from geocopgen.errors import GridError
from geocopgen.raster.chips import Chip, ChipGrid
from geocopgen.raster.grid import GeoBox

#: Side (latent cells) of the blocks whose initial noise is seeded by position: 64 px.
NOISE_BLOCK = 8


@dataclass(frozen=True)
class CanvasLayout:
    """Where the latent canvas, its chips and the raster's pixel chips lie.

    ``chip`` and ``overlap`` are in latent cells; ``factor`` is pixels per cell.
    """

    grid: GeoBox
    factor: int = 8
    chip: int = 32
    overlap: int = 4
    #: the canvas (rows, cols) when several canvases must cover the same ground (one per
    #: resolution group, see :mod:`geocopgen.translation.groups`); ``None``: from ``grid``
    extent: tuple[int, int] | None = None

    @classmethod
    def for_grid(
        cls, grid: GeoBox, *, factor: int, chip: int, overlap_px: int | None = None
    ) -> CanvasLayout:
        """Layout for a model of ``chip`` latent cells and ``factor`` px per cell.

        ``overlap_px`` (default: 1/4 of a chip, 64 px for 256 px chips) must be a multiple of
        ``factor`` and at most half a chip. A quarter, not the raster engine's eighth: a
        denoiser sees least context in a chip's outer cells and predicts them worst (the bundled
        model, trained on 224 px tiles padded to 256 px, visibly so). With 1/8 every pixel of an
        overlap band lies in the outer 32 px of both chips that cover it, and the bands come out
        rougher than the chips' interiors (seam ratio 1.47 on the Virginia crop of
        ``tests/test_seams.py``); with 1/4 the blend leans on a chip where the pixel lies well
        inside it (ratio 0.70), for 1.36x the chips.
        """
        chip_px = chip * factor
        if overlap_px is None:
            overlap_px = max(factor, (chip_px // 4) // factor * factor)
        if overlap_px % factor or not 0 <= overlap_px <= chip_px // 2:
            raise GridError(
                f"overlap must be a multiple of {factor} px from 0 to half a chip "
                f"({chip_px // 2} px), got {overlap_px}"
            )
        return cls(grid, factor, chip, overlap_px // factor)

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def chip_px(self) -> int:
        return self.chip * self.factor

    @property
    def overlap_px(self) -> int:
        return self.overlap * self.factor

    @property
    def shape(self) -> tuple[int, int]:
        """Canvas (rows, cols) in latent cells."""
        if self.extent is not None:
            return self.extent
        h = max(math.ceil(self.grid.height / self.factor), self.chip)
        w = max(math.ceil(self.grid.width / self.factor), self.chip)
        return (h, w)

    @property
    def latent_transform(self) -> Affine:
        """Georeference of the canvas: one cell = ``factor`` x ``factor`` raster pixels."""
        return self.grid.affine @ Affine.scale(self.factor)

    @property
    def latent_grid(self) -> GeoBox:
        """The canvas as a grid: ``at_resolution(grid, factor * res)`` of the scene, extended to
        at least one chip (a raster smaller than a chip has a canvas past its edge)."""
        return GeoBox(self.shape, self.latent_transform, self.grid.crs)

    # --- chips ---------------------------------------------------------------------------------
    @cached_property
    def latent_chips(self) -> ChipGrid:
        return ChipGrid.from_grid(self.latent_grid, chip_size=self.chip, overlap=self.overlap)

    @cached_property
    def pixel_chips(self) -> ChipGrid:
        return ChipGrid.from_grid(self.grid, chip_size=self.chip_px, overlap=self.overlap_px)

    def pixels_of(self, latent_chip: Chip) -> Chip:
        """The pixel chip a latent chip covers (clipped to the raster, the rest padded)."""
        r0 = int(latent_chip.window.row_off) * self.factor
        c0 = int(latent_chip.window.col_off) * self.factor
        h = max(0, min(self.chip_px, self.grid.height - r0))
        w = max(0, min(self.chip_px, self.grid.width - c0))
        return Chip(
            row=latent_chip.row,
            col=latent_chip.col,
            window=Window(c0, r0, w, h),
            transform=self.grid.affine @ Affine.translation(c0, r0),
            size=self.chip_px,
            pad=(self.chip_px - h, self.chip_px - w),
            edges=latent_chip.edges,
        )

    def latents_of(self, pixel_chip: Chip) -> tuple[slice, slice, int, int]:
        """Canvas (rows, cols) slices that decode to ``pixel_chip``, and the (row, col) offset of
        the chip inside the decoded pixels."""
        f = self.factor
        r0, c0 = int(pixel_chip.window.row_off), int(pixel_chip.window.col_off)
        size = pixel_chip.size
        rows = slice(r0 // f, -(-(r0 + size) // f))
        cols = slice(c0 // f, -(-(c0 + size) // f))
        return rows, cols, r0 - rows.start * f, c0 - cols.start * f

    def origin_cell(self) -> tuple[int, int]:
        """(row, col) of the canvas's first cell in the CRS's global latent lattice."""
        t = self.grid.affine
        row = round(t.f / t.e)  # pixel rows from the CRS origin (t.e < 0: rows grow southwards)
        col = round(t.c / t.a)
        return row // self.factor, col // self.factor


def chip_weights(grid: ChipGrid, chip: Chip, device: torch.device | None = None) -> torch.Tensor:
    """A chip's raised-cosine blend weights as a float32 tensor (window-shaped)."""
    return torch.as_tensor(grid.weights(chip), dtype=torch.float32, device=device)


def weight_sum(
    grid: ChipGrid, chips: Iterable[Chip], shape: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """The canvas-sized sum of ``chips``' blend weights, floored at 1e-12: what a canvas of
    weighted chip values is divided by."""
    weight = torch.zeros(shape, device=device)
    for chip in chips:
        weight[chip.slices] += chip_weights(grid, chip, device)
    return weight.clamp_min_(1e-12)


def add_weighted(
    canvas: torch.Tensor, grid: ChipGrid, chips: Iterable[Chip], values: Iterable[torch.Tensor]
) -> None:
    """Add each chip's values ``(..., h, w)``, times its blend weights, onto ``canvas``
    ``(samples, C, H, W)``: the MultiDiffusion blend of one batch of chips."""
    for chip, value in zip(chips, values, strict=True):
        w = chip_weights(grid, chip, canvas.device)
        canvas[(slice(None), slice(None), *chip.slices)] += value * w


# --- seeded initial noise -------------------------------------------------------------------
def _unsigned(v: int) -> int:
    """Zig-zag map of an integer onto the non-negative ones (what SeedSequence accepts)."""
    return 2 * v if v >= 0 else -2 * v - 1


def block_seed(seed: int, sample: int, block_row: int, block_col: int) -> int:
    """The 64-bit seed of one noise block."""
    entropy = [_unsigned(int(seed)), int(sample), _unsigned(block_row), _unsigned(block_col)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def positional_noise(
    layout: CanvasLayout,
    channels: int,
    samples: int = 1,
    seed: int = 0,
    *,
    block: int = NOISE_BLOCK,
) -> torch.Tensor:
    """N(0, 1) noise ``(samples, channels, H, W)`` over the canvas, seeded block by block.

    Drawn on the CPU in float32 whatever the device, so the same seed gives the same noise on
    every machine.
    """
    h, w = layout.shape
    r0, c0 = layout.origin_cell()
    out = torch.empty((samples, channels, h, w), dtype=torch.float32)
    first_r, first_c = r0 // block, c0 // block
    last_r, last_c = (r0 + h - 1) // block, (c0 + w - 1) // block
    for s in range(samples):
        for bi in range(first_r, last_r + 1):
            for bj in range(first_c, last_c + 1):
                gen = torch.Generator().manual_seed(block_seed(seed, s, bi, bj))
                noise = torch.randn((channels, block, block), generator=gen)
                # the block's cells inside the canvas, in canvas and in block coordinates
                ys, ye = max(bi * block, r0), min((bi + 1) * block, r0 + h)
                xs, xe = max(bj * block, c0), min((bj + 1) * block, c0 + w)
                out[s, :, ys - r0 : ye - r0, xs - c0 : xe - c0] = noise[
                    :, ys - bi * block : ye - bi * block, xs - bj * block : xe - bj * block
                ]
    return out
