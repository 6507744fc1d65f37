"""Blockiness of rasters: do edges prefer a block lattice (issue #28's measure)?

    python bench/blockiness.py FILE [FILE ...] [--periods 8 24]

For a block period P, every edge between neighbouring pixels along one direction has a phase:
where it falls in the period, ``(index of the pixel after it) mod P``. The mean absolute
gradient is taken per phase, and the score is the **worst phase's over the median phase's** (NaN
pixels skipped). 1.0 means no phase is preferred; a decoder or a first guess that works in
independent P-pixel blocks puts its edges at one phase and scores high. The score is computed
per band and per direction (rows, columns); the worst is reported. Any lattice offset is
covered, since every phase is tried.

Periods: 8 px is one latent cell of a 10 m group; 24 px is one latent cell of the 30 m DEM
(240 m) seen on a 10 m output grid. Real DEMs and S1 rasters in ``../shared/data`` score
1.1 to 1.5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio


def phase_gradients(band: np.ndarray, period: int, axis: int) -> np.ndarray:
    """Mean absolute gradient along ``axis`` per phase ``0..period-1``."""
    diff = np.abs(np.diff(band, axis=axis))
    index = np.arange(1, band.shape[axis]) % period  # the pixel after each edge
    sums, counts = np.zeros(period), np.zeros(period)
    np.add.at(sums, index, np.nansum(diff, axis=1 - axis))
    np.add.at(counts, index, np.sum(np.isfinite(diff), axis=1 - axis))
    return sums / np.maximum(counts, 1)


def blockiness(band: np.ndarray, period: int) -> float:
    """The worst phase's mean absolute gradient over the median phase's, in the worse
    direction (1.0: no lattice)."""
    scores = []
    for axis in (0, 1):
        per_phase = phase_gradients(band.astype(np.float64), period, axis)
        median = float(np.median(per_phase))
        if median > 0:
            scores.append(float(per_phase.max() / median))
        else:  # edges only at one phase: infinitely blocky; no edges at all: no score
            scores.append(float("inf") if per_phase.max() > 0 else float("nan"))
    return float(np.nanmax(scores)) if not np.all(np.isnan(scores)) else float("nan")


def raster_blockiness(path: Path, period: int) -> float:
    """The worst band's score of a raster (nodata read as NaN)."""
    with rasterio.open(path) as src:
        data = src.read(masked=True).astype(np.float64).filled(np.nan)
    return float(np.nanmax([blockiness(band, period) for band in data]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--periods", nargs="+", type=int, default=[8, 24])
    args = parser.parse_args()
    print(f"{'file':<60}" + "".join(f"{f'P={p}':>9}" for p in args.periods))
    for path in args.files:
        scores = [raster_blockiness(path, p) for p in args.periods]
        print(f"{str(path)[-60:]:<60}" + "".join(f"{s:>9.2f}" for s in scores))


if __name__ == "__main__":
    main()
