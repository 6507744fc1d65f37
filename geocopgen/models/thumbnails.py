"""Major TOM-style thumbnails: the pictures the official COP-GEN-Beta weights were trained on.

The official model never saw physical values. It saw 8-bit thumbnails made by Major TOM's
``MajorTOM/extras/thumbnail_*.py`` on whole 1068 px cells, cut by COP-GEN-Beta into 256 px
tiles at native resolution. These functions rebuild those pictures from geocopgen's physical
arrays, so that conditions fed to the official weights look like its training data:

* :func:`s2_rgb_thumbnail`: ``clip(1.3 * (DN / 10000) ** 0.6, 0, 1) * 255`` on B04, B03, B02,
  truncated to uint8, on the digital numbers **as the product stored them**, so the +1000
  offset of processing baseline 04.00+ is put back first (Major TOM never removed it);
* :func:`dem_hillshade`: matplotlib's ``LightSource(315, 45).hillshade`` with unit pixel
  spacing, stretched min-max over the image and truncated to uint8; Major TOM ran it on the
  356 px, 30 m DEM cell and COP-GEN-Beta enlarged that to 1068 px
  (:func:`upsample_dem_thumbnail`);
* :func:`s1_rtc_thumbnail`: the VV/VH false colour, stretched min-max **over the whole image it
  is given**; it matches the training data only when given the whole 1068 px Major TOM cell;
* :func:`centre_tiles` cuts a 1068 px thumbnail into the 4x4 training tiles and
  :func:`to_model_range` scales tiles to the [-1, 1] RGB the thumbnail VAE takes.

See ``docs/official-weights.md`` for the sources.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from PIL import Image

from geocopgen.errors import BandMismatchError, InputError
from geocopgen.modalities import S2_QUANTIFICATION

#: Major TOM's S2 thumbnail: gain and gamma applied to DN / 10000.
S2_GAIN = 1.3
S2_GAMMA = 0.6
#: The S2 bands of the red, green and blue channels.
S2_RGB_BANDS = ("B04", "B03", "B02")
#: matplotlib's ``LightSource`` defaults, which Major TOM's DEM thumbnail uses.
HILLSHADE_AZIMUTH = 315.0
HILLSHADE_ALTITUDE = 45.0
#: Major TOM cell sizes in pixels: S1/S2 at 10 m, DEM at 30 m.
CELL_PX = 1068
DEM_CELL_PX = 356
#: COP-GEN-Beta's tiles: a 4x4 grid of 256 px crops from the centre 1024 px.
TILE_PX = 256
TILE_GRID = 4


def stored_s2_dn(reflectance: Any, s2_offset: int) -> np.ndarray:
    """Reflectance → the digital numbers the product stored (float64 integers, >= 0).

    geocopgen's reflectance is ``(DN + s2_offset) / 10000`` with ``s2_offset`` 0 or -1000,
    so ``DN = reflectance * 10000 - s2_offset``. NaN (nodata) becomes DN 0, the L2A fill value.
    """
    dn = np.asarray(reflectance, dtype=np.float64) * S2_QUANTIFICATION - float(s2_offset)
    return np.clip(np.rint(np.nan_to_num(dn, nan=0.0)), 0.0, None)


def s2_rgb_thumbnail(reflectance: Any, s2_offset: int | None = None) -> np.ndarray:
    """Major TOM's S2 RGB thumbnail of reflectance, as uint8 ``(3, H, W)``.

    ``reflectance`` is a ``(3, H, W)`` array in B04, B03, B02 order, or a geocopgen S2
    ModalityArray (its B04, B03, B02 are picked by name). ``s2_offset`` defaults to the array's
    ``s2_offset`` attribute: the thumbnail is computed on the DN as stored, offset included,
    because that is how Major TOM made the training pictures.
    """
    rgb, offset = _s2_rgb_and_offset(reflectance, s2_offset)
    scaled = S2_GAIN * (stored_s2_dn(rgb, offset) / S2_QUANTIFICATION) ** S2_GAMMA
    return (np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _s2_rgb_and_offset(reflectance: Any, s2_offset: int | None) -> tuple[np.ndarray, int]:
    if s2_offset is None:
        s2_offset = getattr(reflectance, "attrs", {}).get("s2_offset")
    if s2_offset is None:
        raise InputError(
            "s2_rgb_thumbnail needs the product's Sentinel-2 DN offset (0, or -1000 for "
            "processing baseline 04.00+): pass s2_offset= or a ModalityArray with an s2_offset attr"
        )
    if isinstance(reflectance, xr.DataArray) and "band" in reflectance.coords:
        names = [str(b).upper() for b in reflectance["band"].values]
        if all(b in names for b in S2_RGB_BANDS):
            reflectance = reflectance.isel(band=[names.index(b) for b in S2_RGB_BANDS])
    rgb = np.asarray(reflectance)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise BandMismatchError(
            f"s2_rgb_thumbnail needs (3, H, W) reflectance in {', '.join(S2_RGB_BANDS)} order, "
            f"got shape {rgb.shape}"
        )
    return rgb, int(s2_offset)


def dem_hillshade(
    dem: Any, azimuth: float = HILLSHADE_AZIMUTH, altitude: float = HILLSHADE_ALTITUDE
) -> np.ndarray:
    """Major TOM's DEM thumbnail: a Lambertian hillshade of the DEM, as uint8 ``(H, W)``.

    Follows matplotlib's ``LightSource.hillshade`` with unit pixel spacing (slopes are metres
    per *pixel*, so the picture depends on the grid: Major TOM used the 30 m cell) and a
    min-max stretch of the illumination over the image (a flat image stays at ``sin(altitude)``);
    ``255 * x`` is truncated. NaN pixels, which Major TOM's data did not have, are left out
    of the stretch and drawn 0.
    """
    z = np.squeeze(np.asarray(dem))
    if z.ndim != 2:
        raise BandMismatchError(f"dem_hillshade needs one (H, W) band, got shape {z.shape}")
    intensity = _illumination(z, azimuth, altitude)
    valid = np.isfinite(intensity) & np.isfinite(z)
    if not valid.any():
        raise InputError("dem_hillshade: the DEM has no valid pixel")
    low, high = intensity[valid].min(), intensity[valid].max()
    if high - low > 1e-6:
        intensity = (intensity - low) / (high - low)
    intensity = np.clip(np.where(valid, intensity, 0.0), 0.0, 1.0)
    return (255.0 * intensity).astype(np.uint8)


def _illumination(z: np.ndarray, azimuth: float, altitude: float) -> np.ndarray:
    """Cosine between the unit surface normal and the sun (rows run south, as in an image).

    The float64 steps come in matplotlib's order, so the truncated bytes agree with it.
    """
    grad_y, grad_x = np.gradient(z, -1, 1)
    normal = np.empty((*z.shape, 3))
    normal[..., 0], normal[..., 1], normal[..., 2] = -grad_x, -grad_y, 1.0
    normal /= np.sqrt(normal[..., :1] ** 2 + normal[..., 1:2] ** 2 + normal[..., 2:] ** 2)
    az, alt = np.radians(90.0 - azimuth), np.radians(altitude)
    sun = np.array([np.cos(az) * np.cos(alt), np.sin(az) * np.cos(alt), np.sin(alt)])
    return normal.dot(sun)


def upsample_dem_thumbnail(hillshade: np.ndarray, size: int = CELL_PX) -> np.ndarray:
    """Enlarge a DEM hillshade to ``size`` px with PIL bilinear, as COP-GEN-Beta did (356 → 1068).

    COP-GEN-Beta applied torchvision ``Resize(1068)`` to the PIL thumbnail, which is PIL's
    bilinear resize; using PIL here gives the same 8-bit rounding.
    """
    image = Image.fromarray(np.ascontiguousarray(hillshade, dtype=np.uint8), mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def s1_rtc_thumbnail(vv_vh_db: Any) -> np.ndarray:
    """Major TOM's S1 RTC false colour of a **whole 1068 px cell**, as uint8 ``(3, H, W)``.

    Red is VV and blue VH, each stretched min-max over the valid pixels of the image it is
    given; green is ``255 * (red + blue) / max(red + blue)``; nodata (non-finite dB) is 0.
    Absolute dB is lost, and a crop gets a different stretch from the cell it was cut from, so
    only a whole Major TOM cell reproduces the training pictures.
    """
    db = np.asarray(vv_vh_db, dtype=np.float64)
    if db.ndim != 3 or db.shape[0] != 2:
        raise BandMismatchError(f"s1_rtc_thumbnail needs (2, H, W) VV, VH in dB, got {db.shape}")
    red, blue = (_stretch_valid(band) for band in db)
    total = red + blue
    green = 255.0 * total / total.max()
    return np.stack([red, green, blue]).astype(np.uint8)


def _stretch_valid(band: np.ndarray) -> np.ndarray:
    valid = np.isfinite(band)
    if not valid.any():
        raise InputError("s1_rtc_thumbnail: a polarisation has no valid pixel")
    low, high = band[valid].min(), band[valid].max()
    return np.where(valid, (band - low) / (high - low) * 255.0, 0.0)


def centre_tiles(thumbnail: np.ndarray, tile: int = TILE_PX, grid: int = TILE_GRID) -> np.ndarray:
    """Cut a ``(C, H, W)`` or ``(H, W)`` thumbnail into COP-GEN-Beta's tiles, ``(grid², C, t, t)``.

    The centre ``grid * tile`` px are kept (torchvision ``CenterCrop``: 22 px off each side of a
    1068 px cell) and cut row by row, tile index ``row * grid + col``.
    """
    image = thumbnail[None] if thumbnail.ndim == 2 else thumbnail
    span = grid * tile
    height, width = image.shape[-2:]
    if height < span or width < span:
        raise InputError(f"centre_tiles needs at least {span} x {span} px, got {height} x {width}")
    top, left = round((height - span) / 2.0), round((width - span) / 2.0)
    crop = image[:, top : top + span, left : left + span]
    tiles = crop.reshape(image.shape[0], grid, tile, grid, tile).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(tiles.reshape(grid * grid, image.shape[0], tile, tile))


def to_model_range(thumbnails: np.ndarray) -> torch.Tensor:
    """uint8 thumbnails ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` → float32 RGB in [-1, 1].

    ``x / 127.5 - 1``, as COP-GEN-Beta fed the VAE; a one-channel DEM hillshade is repeated to
    three channels, as in its DEM tiles.
    """
    x = torch.from_numpy(np.asarray(thumbnails, dtype=np.float32) / 127.5 - 1.0)
    while x.ndim < 4:
        x = x.unsqueeze(0)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[1] != 3:
        raise BandMismatchError(f"to_model_range needs 1 or 3 channels, got {x.shape[1]}")
    return x
