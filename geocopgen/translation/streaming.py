"""The chip streaming both translation paths share (the 4-modality canvas and COP-GEN's
resolution groups): batching, runs of chips read in one window, encoding chips into a blended
latent canvas, decoding the raster's pixel chips from one (clipped to the physical domain,
reduced over samples), and where decoded chips go. One module, so a fix to how chips are read,
skipped, blended or clipped reaches every model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from geocopgen.domain import DomainGuard
from geocopgen.options import Reduce
from geocopgen.prefetch import prefetch
from geocopgen.raster.chips import Chip, read_chips
from geocopgen.translation.canvas import CanvasLayout, chip_weights
from geocopgen.translation.validity import PixelMask


class ChipSink(Protocol):
    """Where decoded chips go (:class:`~geocopgen.raster.mosaic.MosaicWriter` is one)."""

    def add(self, chip: Chip, array: np.ndarray) -> None: ...

    def skip(self, chip: Chip) -> None: ...


def batched(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last may be short)."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def rebatched(groups: Iterable[list[Any]], size: int) -> Iterator[list[Any]]:
    """The items of consecutive groups in batches of ``size`` (the last may be short)."""
    batch: list[Any] = []
    for group in groups:
        for item in group:
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


#: Chips per windowed read: a run of 8 chips of 256 px at the default overlap spans 1600 px, so
#: a read of a lazily sliced array computes at most 3 of its 1024 px chunks per band group
#: (163 MB for 13 bands) even on a 10 980 px wide tile.
CHIPS_PER_READ = 8


def chip_runs(chips: Iterable[Chip], size: int = CHIPS_PER_READ) -> list[list[Chip]]:
    """Chips grouped by chip-grid row, in order, each row cut into runs of at most ``size``."""
    rows: dict[int, list[Chip]] = {}
    for chip in chips:
        rows.setdefault(chip.row, []).append(chip)
    return [run for row in rows.values() for run in batched(row, size)]


#: Physical pixels ``(chips, C, px, px)`` float32 (NaN invalid) → latents ``(chips, z, h, w)``.
ChipEncoder = Callable[[np.ndarray, np.ndarray], torch.Tensor]
#: A latent window ``(samples, z, h, w)`` → physical pixels ``(samples, C, px, px)``.
ChipDecoder = Callable[[torch.Tensor], torch.Tensor]


def encode_chips(
    encode: ChipEncoder,
    array: xr.DataArray,
    layout: CanvasLayout,
    *,
    channels: int,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "encoding",
) -> tuple[torch.Tensor, np.ndarray, PixelMask]:
    """The latent canvas of ``array`` (on ``layout.grid``) made by ``encode`` chip by chip, the
    latent chips holding any valid pixel, and the raster pixels holding data: the reading,
    skipping and blending every codec shares (see :func:`encode_canvas`)."""
    grid = layout.latent_chips
    has_data = np.zeros(grid.shape, dtype=bool)
    observed = PixelMask(layout.grid.height, layout.grid.width)
    total = torch.zeros((1, channels, *layout.shape), device=device)
    weight = torch.zeros(layout.shape, device=device)
    chips = list(grid)
    bar = tqdm(total=len(chips), desc=desc, unit="chip", disable=not progress)
    runs = (  # one read per run of a chip row (see read_chips), the next read while this encodes
        list(zip(run, read_chips(array, [layout.pixels_of(c) for c in run]), strict=True))
        for run in chip_runs(chips)
    )
    with bar, torch.inference_mode():
        for read in rebatched(prefetch(runs), batch_size):
            bar.update(len(read))
            x = np.stack([data.data for _, data in read]).astype(np.float32, copy=False)
            finite = np.isfinite(x)  # one pass serves the mask, the skip and the NaN fill
            seen = finite.any(axis=1)
            for (_, data), chip_seen in zip(read, seen, strict=True):
                observed.set(*data.chip.slices, data.crop(chip_seen))
            keep = seen.any(axis=(1, 2))
            if not keep.any():
                continue
            if not keep.all():
                read = [r for r, k in zip(read, keep, strict=True) if k]
                x, finite = x[keep], finite[keep]
            z = encode(x, finite)
            for (chip, _), zc in zip(read, z, strict=True):
                w = chip_weights(grid, chip, device)
                rows, cols = chip.slices
                total[0, :, rows, cols] += zc * w
                weight[rows, cols] += w
                has_data[chip.row, chip.col] = True
    return total.div_(weight.clamp_min(1e-12)), has_data, observed  # in place: one canvas less




def decode_chips(
    decode: ChipDecoder,
    latents: torch.Tensor,
    layout: CanvasLayout,
    *,
    valid: PixelMask | None = None,
    reduce: Callable[[np.ndarray], np.ndarray],
    progress: bool = True,
    desc: str = "decoding",
    guard: DomainGuard | None = None,
) -> Iterator[tuple[Chip, np.ndarray | None]]:
    """The raster's pixel chips decoded from the canvas by ``decode``, cropped to their windows,
    clipped to the physical domain by ``guard`` (every sample, before reduction), reduced over
    samples by ``reduce`` and blanked where ``valid`` is False (see :func:`decode_canvas`)."""
    chips = list(layout.pixel_chips)
    bar = tqdm(total=len(chips), desc=desc, unit="chip", disable=not progress)
    with bar, torch.inference_mode():
        for chip in chips:
            bar.update(1)
            mask = None if valid is None else valid.get(*chip.slices)
            if mask is not None and not mask.any():
                yield chip, None
                continue
            rows, cols, dr, dc = layout.latents_of(chip)
            image = decode(latents[:, :, rows, cols])
            image = image[:, :, dr : dr + chip.size, dc : dc + chip.size]
            h, w = int(chip.window.height), int(chip.window.width)
            physical = image[..., :h, :w].cpu().numpy()
            if guard is not None:
                guard.clip(chip, physical, mask)
            out = reduce(physical)
            if mask is not None and not mask.all():
                out[:, ~mask] = np.nan
            yield chip, out


def reduce_samples(x: np.ndarray, reduce: Reduce) -> np.ndarray:
    """``(samples, C, h, w)`` → output bands: the one sample; mean then standard deviation
    (n - 1) per band; or every sample, sample-major."""
    n = x.shape[0]
    if n == 1:
        return x[0].astype(np.float32)
    if reduce == "samples":
        return x.reshape(n * x.shape[1], *x.shape[2:]).astype(np.float32)
    mean, std = x.mean(axis=0), x.std(axis=0, ddof=1)
    return np.concatenate([mean, std]).astype(np.float32)
