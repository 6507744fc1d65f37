"""How visible are chip borders? The seam ratio of a translated raster.

For one band, the *seam ratio* is the mean absolute difference between neighbouring pixels
across chip borders (the pixel rows and columns where a chip of the latent or the pixel chip grid
starts or ends inside the raster) divided by the same mean everywhere else. A seamless mosaic has
a ratio near 1: its borders are as smooth as its interior. Independently sampled chips show a
ratio well above 1.
"""

from __future__ import annotations

import numpy as np

from geocopgen.translation.canvas import CanvasLayout


def chip_borders(layout: CanvasLayout) -> tuple[list[int], list[int]]:
    """Pixel rows and columns where a chip starts or ends strictly inside the raster.

    A border ``b`` separates pixel ``b - 1`` from pixel ``b``.
    """
    f = layout.factor
    lat, pix = layout.latent_chips, layout.pixel_chips

    def borders(latent: list[int], pixel: list[int], length: int) -> list[int]:
        edges = {o * f for o in latent} | {o * f + layout.chip_px for o in latent}
        edges |= set(pixel) | {o + layout.chip_px for o in pixel}
        return sorted(e for e in edges if 0 < e < length)

    g = layout.grid
    return (
        borders(lat.row_offsets, pix.row_offsets, g.height),
        borders(lat.col_offsets, pix.col_offsets, g.width),
    )


def seam_ratio(image: np.ndarray, rows: list[int], cols: list[int]) -> float:
    """Mean |neighbour difference| across the border ``rows``/``cols`` over the mean elsewhere.

    ``image`` is one band ``(H, W)``; NaN pixels are left out.
    """
    image = np.asarray(image, dtype=np.float64)
    dy = np.abs(np.diff(image, axis=0))  # dy[r] is between rows r and r + 1
    dx = np.abs(np.diff(image, axis=1))
    at_y = np.zeros(dy.shape[0], dtype=bool)
    at_y[[r - 1 for r in rows]] = True
    at_x = np.zeros(dx.shape[1], dtype=bool)
    at_x[[c - 1 for c in cols]] = True
    border = np.concatenate([dy[at_y].ravel(), dx[:, at_x].ravel()])
    inside = np.concatenate([dy[~at_y].ravel(), dx[:, ~at_x].ravel()])
    border, inside = border[np.isfinite(border)], inside[np.isfinite(inside)]
    if not border.size or not inside.size:
        raise ValueError("seam_ratio needs finite pixels on and off the chip borders")
    return float(border.mean() / inside.mean())
