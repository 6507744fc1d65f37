"""Before/after pictures for the examples (Pillow + numpy; nothing geocopgen-specific)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: A terrain-like colour ramp (low → high) for single-band maps.
RAMP = np.array(
    [[38, 70, 83], [42, 157, 143], [233, 196, 106], [244, 162, 97], [231, 111, 81]], dtype=float
)


def stretch(values: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Percentile stretch to 0..1 (per band along axis 0); NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    lo = np.nanpercentile(values, low, axis=(-2, -1), keepdims=True)
    hi = np.nanpercentile(values, high, axis=(-2, -1), keepdims=True)
    return np.clip((values - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def rgb(bands: np.ndarray) -> Image.Image:
    """Three bands ``(3, H, W)`` → a stretched RGB picture (NaN black)."""
    image = np.nan_to_num(stretch(bands)) * 255
    return Image.fromarray(np.moveaxis(image, 0, -1).astype(np.uint8))


def ramp(band: np.ndarray, limits: tuple[float, float] | None = None) -> Image.Image:
    """One band ``(H, W)`` → a colour-ramped picture (NaN black); ``limits`` fix the scale."""
    band = np.asarray(band, dtype=np.float64)
    if limits is None:
        scaled = stretch(band[None])[0]
    else:
        scaled = np.clip((band - limits[0]) / max(limits[1] - limits[0], 1e-12), 0, 1)
    pos = np.nan_to_num(scaled) * (len(RAMP) - 1)
    i = np.minimum(pos.astype(int), len(RAMP) - 2)
    frac = (pos - i)[..., None]
    colours = RAMP[i] * (1 - frac) + RAMP[i + 1] * frac
    colours[np.isnan(scaled)] = 0
    return Image.fromarray(colours.astype(np.uint8))


def panel(pictures: Sequence[tuple[str, Image.Image]], path: Path, width: int = 320) -> Path:
    """Pictures side by side, each scaled to ``width`` px and titled; saved as PNG."""
    scaled = [
        (title, im.resize((width, round(im.height * width / im.width)), Image.Resampling.NEAREST))
        for title, im in pictures
    ]
    height = max(im.height for _, im in scaled)
    sheet = Image.new("RGB", (len(scaled) * (width + 8) + 8, height + 32), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (title, im) in enumerate(scaled):
        x = 8 + k * (width + 8)
        sheet.paste(im, (x, 28))
        draw.text((x, 8), title, fill="black")
    sheet.save(path)
    return path
