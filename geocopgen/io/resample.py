"""Bilinear resampling between two grids of one CRS, per window, in numpy, reproducibly.

Used for Sentinel-2 20 m and 60 m bands read onto the 10 m grid. GDAL's warper gives results that
depend (by one DN) on the window asked for, which would make overlapping chips disagree; this is
the textbook rule, computed per pixel from its *global* position, so any window gives the same
values (and ``docs/modalities.md`` can state it exactly):

* the target pixel centre ``(x, y)`` maps to source pixel coordinates
  ``u = (x - x0) / dx - 0.5``, ``v = (y - y0) / dy - 0.5`` (centre-based, fractional);
* the value is ``sum(w * s) / sum(w)`` over the 2 x 2 source pixels around ``(u, v)``, with the
  usual bilinear weights, counting only valid source pixels (nodata neighbours drop out and the
  weights renormalise); indices are clamped at the source's edge (edge pixels repeat);
* a target pixel whose centre lies outside the source footprint, or whose neighbours are all
  nodata, is nodata (NaN).

Sources of 8- or 16-bit integers (Sentinel-2 DNs) are interpolated in float32, others in
float64. For 16-bit DNs float32 is exact on 20 m → 10 m (weights 1/4 and 3/4 add two bits per
pass to 16-bit integers: 20 of float32's 24) and within 0.001 DN on 60 m → 10 m, far below the
DN step, at a third of the float64 cost: resampling was the largest part of reading a chip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from geocopgen.raster.grid import GeoBox


def _axis(
    start: int, count: int, dst_origin: float, dst_step: float, src_origin: float,
    src_step: float, src_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Lower neighbour index, fraction and inside-footprint mask along one axis."""
    centre = dst_origin + (np.arange(start, start + count, dtype=np.float64) + 0.5) * dst_step
    u = (centre - src_origin) / src_step - 0.5
    inside = (u >= -0.5) & (u <= src_len - 0.5)
    i0 = np.floor(u)
    frac = u - i0
    return i0.astype(np.int64), frac, inside


def bilinear_window(
    read: object,
    src: GeoBox,
    dst: GeoBox,
    window: Window,
    nodata: Sequence[float],
) -> np.ndarray:
    """Bilinearly resampled values (NaN = nodata) of ``window`` of ``dst``: float32 for 8/16-bit
    integer sources, else float64 (module docstring).

    ``read(src_window) -> (band, rows, cols)`` reads raw source pixels (a rasterio ``read``
    bound to the band indexes).
    """
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    st, dt = src.affine, dst.affine
    iy, fy, in_y = _axis(r0, h, dt.f, dt.e, st.f, st.e, src.height)
    ix, fx, in_x = _axis(c0, w, dt.c, dt.a, st.c, st.a, src.width)
    rows = np.clip(np.stack([iy, iy + 1]), 0, src.height - 1)
    cols = np.clip(np.stack([ix, ix + 1]), 0, src.width - 1)
    rmin, rmax = int(rows.min()), int(rows.max())
    cmin, cmax = int(cols.min()), int(cols.max())
    raw = np.asarray(read(Window(cmin, rmin, cmax - cmin + 1, rmax - rmin + 1)))
    valid = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, dtype=bool)
    for nd in nodata:
        if not np.isnan(nd):
            valid &= raw != nd
    all_valid = bool(valid.all())
    work = np.float32 if raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2 else np.float64
    fy, fx = fy.astype(work), fx.astype(work)
    weighted = raw.astype(work) if all_valid else np.where(valid, raw, 0).astype(work)
    rows -= rmin
    cols -= cmin
    # The 2 x 2 bilinear sum factorises: interpolate rows, then columns, for the values and for
    # the valid-weight (so nodata neighbours drop out). Per pixel this depends only on its global
    # position, never on the window.
    total = _interp(_interp(weighted, rows, fy, axis=1), cols, fx, axis=2)
    if all_valid:
        # The same float operations as the general case on an all-ones array, done once per
        # (row, col) instead of per band: bit-identical, so values never depend on the window.
        ones_rows = 1 * (1 - fy) + 1 * fy  # in fy's dtype, as the values
        weight = np.broadcast_to(
            ones_rows[:, None] * (1.0 - fx)[None, :] + ones_rows[:, None] * fx[None, :],
            total.shape,
        )
    else:
        weight = _interp(_interp(valid.astype(work), rows, fy, axis=1), cols, fx, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.divide(total, weight, out=total)  # in place: total is not used again
    if not all_valid:
        out[weight <= 0] = np.nan  # (all valid: every weight is (1-f)+f > 0)
    out[:, ~in_y, :] = np.nan
    out[:, :, ~in_x] = np.nan
    return out


def _interp(a: np.ndarray, idx: np.ndarray, frac: np.ndarray, axis: int) -> np.ndarray:
    """``(1 - f) * a[i0] + f * a[i1]`` along ``axis`` (idx: (2, n) neighbour indexes)."""
    lo = np.take(a, idx[0], axis=axis)
    hi = np.take(a, idx[1], axis=axis)
    shape = [1] * a.ndim
    shape[axis] = -1
    f = frac.reshape(shape)
    lo *= 1.0 - f  # in place on take's fresh copies: the same arithmetic, fewer temporaries
    hi *= f
    lo += hi
    return lo
