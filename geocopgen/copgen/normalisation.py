"""COP-GEN's pixel and scalar codecs, reproduced to the bit (spec A3), plus what they lose.

Every image slot maps physical values to the VAE's [-1, 1] space and back exactly as the official
``pre_process_data``/``post_process_data`` do on torch tensors, float32 throughout, with the same
order of operations (that fixes the last bit). NumPy arrays are accepted and returned as NumPy;
they go through the same torch ops, so they match the official *torch* path (the official NumPy
path differs from it by 1 ulp for S1 and DEM).

The official codecs have limits (spec C7); geocopgen keeps the arithmetic, so weights see what they
were trained on, and adds counters (``*_count``/``*_counts``) so callers can report the loss:

* Sentinel-2: raw DN / 10 000, **no processing-baseline offset handling**: COP-GEN was trained on
  Major TOM DN as delivered, so products of baseline 04.00 and later carry +1000. geocopgen reads
  physical reflectance with the offset removed; :func:`dn_from_reflectance` puts back the DN
  COP-GEN expects for that product. Outputs are not clipped.
* Sentinel-1: linear power, ``<= 0`` → ``min_positive``, values in (0, min_positive) are *not*
  floored, outputs saturate at ``min_positive`` and :data:`S1_MAX_POWER` (10 533.68).
* DEM: ``log1p``; every height ``<= 0`` m is floored to ``min_positive`` (bathymetry and
  depressions are lost); outputs saturate at :data:`DEM_MAX_M` (8847.47 m).
* LULC: ESRI codes {0,1,2,4,5,7,8,9,10,11} → 10 one-hot classes, anything else (NaN included) →
  class 0. TerraMind stores class *indices* 0..9; see :func:`detect_lulc_scheme`.
* Lat/lon: unit xyz. The official decode does not renormalise; geocopgen's default does.
* Date: [sin doy, cos doy, year]. Computed in UTC: the official POSIX path uses local time (C5).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import torch

from geocopgen.copgen.layout import SLOT_NAMES
from geocopgen.errors import InputError
from geocopgen.io.landcover import (  # noqa: F401  (re-exported: the COP-GEN codec's rule)
    LulcScheme,
    detect_lulc_scheme,
    lulc_scheme_from_tags,
)
from geocopgen.modalities import dn_to_reflectance, reflectance_to_dn

Array = Any  # torch.Tensor or np.ndarray


@dataclass(frozen=True)
class LogCodec:
    """A log-scaled slot's constants (the official ``min_db``, ``max_db``, ``min_positive``)."""

    min: float
    max: float
    min_positive: float


S2_SCALE = 10000.0
S1 = LogCodec(min=-55.787186, max=40.225800, min_positive=2.6380407689430285e-06)
DEM = LogCodec(min=0.000006, max=9.088, min_positive=5.899129519093549e-06)

#: ESRI land-cover codes in one-hot order (class index = position).
LULC_ESRI_CODES: tuple[int, ...] = (0, 1, 2, 4, 5, 7, 8, 9, 10, 11)
LULC_CLASS_NAMES: tuple[str, ...] = (
    "None/NoData",
    "Water",
    "Trees",
    "Flooded Vegetation",
    "Crops",
    "Built-up Areas",
    "Bare Ground",
    "Snow/Ice",
    "Clouds",
    "Rangeland",
)
CLOUD_MASK_CODES: tuple[int, ...] = (0, 1, 2, 3)
CLOUD_MASK_CLASS_NAMES: tuple[str, ...] = ("Clear", "Thick", "Thin", "Shadow")

YEAR_RANGE = (1950, 2050)


def _numpy_too(fn: Callable) -> Callable:
    """Let a torch codec take a NumPy array and give NumPy back (same torch arithmetic)."""

    @functools.wraps(fn)
    def wrapper(x: Array, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, np.ndarray):
            out = fn(torch.from_numpy(np.array(x)), *args, **kwargs)
            return out.numpy() if isinstance(out, torch.Tensor) else out
        return fn(torch.as_tensor(x), *args, **kwargs)

    return wrapper


def _f32(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32, device=like.device)


def _unit(y: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], the official ``(y + 1.0) / 2.0``."""
    return (y + 1.0) / 2.0


def _log_to_model(v: torch.Tensor, codec: LogCodec) -> torch.Tensor:
    lo, hi = _f32(codec.min, v), _f32(codec.max, v)
    return (v - lo) / (hi - lo) * 2.0 - 1.0


def _log_from_model(y: torch.Tensor, codec: LogCodec) -> torch.Tensor:
    u = torch.clamp(_unit(y), 0.0, 1.0)
    return u * (codec.max - codec.min) + codec.min


def _floor_non_positive(x: torch.Tensor, codec: LogCodec) -> torch.Tensor:
    return torch.where(x <= 0, _f32(codec.min_positive, x), x)


# --- Sentinel-2 -----------------------------------------------------------------------------
@_numpy_too
def s2_to_model(dn: Array) -> Array:
    """S2 L1C/L2A digital numbers (as COP-GEN was trained on) → [-1, 1]: ``DN/10000·2 − 1``."""
    return dn.to(torch.float32) / S2_SCALE * 2.0 - 1.0


@_numpy_too
def s2_from_model(y: Array) -> Array:
    """[-1, 1] → digital numbers, unclipped (negative or above 10 000 where the model says so)."""
    return _unit(y) * S2_SCALE


def dn_from_reflectance(reflectance: Array, offset: int, *, round_dn: bool = False) -> Array:
    """Physical reflectance → the DN COP-GEN was trained on for this product.

    ``offset`` is the product's offset as :func:`geocopgen.modalities.s2_offset` gives it:
    ``-1000`` for processing baseline 04.00 and later (the DN carry +1000, which Major TOM kept
    and COP-GEN saw), ``0`` before. ``round_dn=True`` snaps to whole DN, which recovers the stored
    integers exactly when the reflectance was read without resampling.
    """
    dn = reflectance_to_dn(reflectance, offset)
    if round_dn:
        return torch.round(dn) if isinstance(dn, torch.Tensor) else np.round(dn)
    return dn


def reflectance_from_dn(dn: Array, offset: int) -> Array:
    """Inverse of :func:`dn_from_reflectance` (for COP-GEN's S2 outputs: the target's offset)."""
    return dn_to_reflectance(dn, offset)


# --- Sentinel-1 -----------------------------------------------------------------------------
@_numpy_too
def s1_to_model(power: Array, *, in_db: bool = False) -> Array:
    """S1 RTC linear power (or dB with ``in_db``) → [-1, 1] (channels [vv, vh]).

    ``<= 0`` becomes ``min_positive``; (0, min_positive) is not floored; NaN and +inf pass.
    """
    x = power.to(torch.float32)
    if in_db:
        x = 10 ** (x / 10.0)
    return _log_to_model(10 * torch.log10(_floor_non_positive(x, S1)), S1)


@_numpy_too
def s1_from_model(y: Array) -> Array:
    """[-1, 1] → linear power, saturating at ``min_positive`` and :data:`S1_MAX_POWER`."""
    return torch.clamp(10 ** (_log_from_model(y, S1) / 10.0), min=S1.min_positive)


# --- DEM ------------------------------------------------------------------------------------
@_numpy_too
def dem_to_model(height: Array) -> Array:
    """Heights in metres → [-1, 1] via ``log1p``; every height ``<= 0`` m is floored."""
    x = _floor_non_positive(height.to(torch.float32), DEM)
    return _log_to_model(torch.log1p(x), DEM)


@_numpy_too
def dem_from_model(y: Array) -> Array:
    """[-1, 1] → metres, in [6.0e-6, :data:`DEM_MAX_M`]."""
    return torch.clamp(torch.expm1(_log_from_model(y, DEM)), min=DEM.min_positive)


#: The largest outputs the official decoders can give (float32), reached at y >= 1.
S1_MAX_POWER = float(s1_from_model(torch.tensor(1.0)))
S1_MIN_POWER = float(s1_from_model(torch.tensor(-1.0)))
DEM_MAX_M = float(dem_from_model(torch.tensor(1.0)))
DEM_MIN_M = float(dem_from_model(torch.tensor(-1.0)))


# --- one-hot classes ------------------------------------------------------------------------
def _one_hot(values: torch.Tensor, codes: Sequence[int]) -> torch.Tensor:
    if values.ndim < 3 or values.shape[-3] != 1:
        raise InputError(
            f"class raster of shape {tuple(values.shape)}: expected (..., 1, H, W), one band"
        )
    values = values.squeeze(-3)
    index = torch.zeros(values.shape, dtype=torch.int64, device=values.device)
    for i, code in enumerate(codes):
        index[values == code] = i
    planes = [(index == i).to(torch.float32) for i in range(len(codes))]
    return torch.stack(planes, dim=-3) * 2.0 - 1.0


def _one_hot_decode(y: torch.Tensor, codes: Sequence[int]) -> torch.Tensor:
    index = torch.argmax(_unit(y), dim=-3, keepdim=True)  # first index wins ties, as official
    return torch.tensor(codes, dtype=torch.int64, device=y.device)[index]


@_numpy_too
def lulc_to_model(esri_codes: Array) -> Array:
    """ESRI land-cover codes (..., 1, H, W) → one-hot (..., 10, H, W) in {-1, +1}.

    Any other value (3, 6, 12+, NaN) is class 0; TerraMind indices must be mapped first
    (:func:`esri_from_terramind`).
    """
    return _one_hot(esri_codes, LULC_ESRI_CODES)


@_numpy_too
def lulc_from_model(y: Array) -> Array:
    """(..., 10, H, W) → ESRI codes (..., 1, H, W) int64 by argmax (first index wins ties)."""
    return _one_hot_decode(y, LULC_ESRI_CODES)


@_numpy_too
def cloud_mask_to_model(classes: Array) -> Array:
    """Cloud mask {0 clear, 1 thick, 2 thin, 3 shadow} (..., 1, H, W) → one-hot (..., 4, H, W)."""
    return _one_hot(classes, CLOUD_MASK_CODES)


@_numpy_too
def cloud_mask_from_model(y: Array) -> Array:
    """(..., 4, H, W) → cloud classes (..., 1, H, W) int64 by argmax."""
    return _one_hot_decode(y, CLOUD_MASK_CODES)


# --- LULC schemes: ESRI codes vs TerraMind class indices ------------------------------------
#: TerraMind index → ESRI code (TerraMind stores COP-GEN's one-hot order as 0..9).
TERRAMIND_TO_ESRI: dict[int, int] = dict(enumerate(LULC_ESRI_CODES))


@_numpy_too
def esri_from_terramind(indices: Array) -> Array:
    """TerraMind class indices 0..9 → ESRI codes (anything else → 0, no data)."""
    table = torch.tensor(LULC_ESRI_CODES, dtype=torch.int64, device=indices.device)
    idx = indices.to(torch.int64)
    valid = (idx >= 0) & (idx < len(LULC_ESRI_CODES))
    return torch.where(valid, table[idx.clamp(0, len(LULC_ESRI_CODES) - 1)], 0)


def lulc_as_esri(values: Array, scheme: LulcScheme) -> Array:
    """Land cover in ``scheme`` → ESRI codes, the input COP-GEN's codec expects."""
    return esri_from_terramind(values) if scheme == "terramind" else values


# --- latitude / longitude -------------------------------------------------------------------
def _as_list(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def encode_latlon(lat: Any, lon: Any) -> torch.Tensor:
    """Degrees → unit xyz (B, 1, 1, 3) float32, computed in double as the official code does."""
    rows = []
    for la, lo in zip(_as_list(lat), _as_list(lon), strict=True):
        phi, lam = math.radians(la), math.radians(lo)
        rows.append([math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)])
    return torch.from_numpy(np.array(rows, dtype=np.float32).reshape(-1, 1, 1, 3))


def decode_latlon(xyz: torch.Tensor, *, renormalise: bool = True) -> torch.Tensor:
    """xyz (B, 1, 1, 3) → [lat, lon] degrees (B, 1, 1, 2) float32.

    ``renormalise=False`` is the official decode: ``asin(clamp(z))`` of the raw vector, so a
    model output of norm ≠ 1 biases the latitude. geocopgen's default divides by the norm first,
    which gives the direction the vector points in.
    """
    xyz = torch.as_tensor(xyz)
    if renormalise:
        xyz = xyz / torch.linalg.vector_norm(xyz, dim=-1, keepdim=True)
    x, y, z = xyz[..., 0], xyz[..., 1], torch.clamp(xyz[..., 2], -1, 1)
    lat = torch.arcsin(z) * 180.0 / np.pi
    lon = torch.atan2(y, x) * 180.0 / np.pi
    return torch.stack([lat, lon], dim=-1)


# --- dates ----------------------------------------------------------------------------------
def _days_in(year: int) -> int:
    return 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365


def _utc_date(value: date | datetime | str) -> date:
    """A calendar date in UTC: aware datetimes are converted, naive ones are read as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    return value


def _encode_one(day: date) -> list[float]:
    lo, hi = YEAR_RANGE
    doy, n = day.timetuple().tm_yday, _days_in(day.year)
    angle = 2 * np.pi * doy / n
    return [np.sin(angle), np.cos(angle), 2 * ((day.year - lo) / (hi - lo)) - 1]


def encode_date(dates: date | datetime | str | Sequence[date | datetime | str]) -> torch.Tensor:
    """Date(s) → [sin doy, cos doy, year] (B, 1, 1, 3) float32, with the UTC calendar date."""
    items = [dates] if isinstance(dates, (date, str)) else list(dates)
    rows = [_encode_one(_utc_date(d)) for d in items]
    return torch.from_numpy(np.array(rows, dtype=np.float32).reshape(-1, 1, 1, 3))


def encode_timestamp(posix_seconds: Any) -> torch.Tensor:
    """POSIX seconds → date encoding, the calendar date **in UTC** (the official code used local
    time after a float32 round trip, which moves dates by a day in many time zones: spec C5)."""
    days = [datetime.fromtimestamp(s, tz=UTC) for s in _as_list(posix_seconds)]
    return encode_date(days)


def _decode_one(sin_doy: float, cos_doy: float, year_norm: float) -> list[int]:
    lo, hi = YEAR_RANGE
    if not all(math.isfinite(v) for v in (sin_doy, cos_doy, year_norm)):
        raise InputError(f"date vector {[sin_doy, cos_doy, year_norm]} is not finite")
    year = round(((year_norm + 1) / 2) * (hi - lo) + lo)
    n = _days_in(year)
    angle = float(np.arctan2(sin_doy, cos_doy))
    if angle < 0:
        angle += 2 * np.pi
    doy = round(angle * n / (2 * np.pi)) % n or n
    day = datetime(year, 1, 1) + timedelta(days=doy - 1)
    return [day.day, day.month, day.year]


def decode_date(vectors: torch.Tensor) -> torch.Tensor:
    """[sin doy, cos doy, year] (..., 3) → int64 [day, month, year] (..., 3), the official rule.

    Year: ``round(((v2 + 1)/2)·100 + 1950)``; day of year: ``round(atan2(v0, v1)·n/2π) mod n``
    with 0 read as n; the vector need not be unit-norm.
    """
    vectors = torch.as_tensor(vectors)
    rows = [_decode_one(*map(float, v)) for v in vectors.reshape(-1, 3).tolist()]
    return torch.tensor(rows, dtype=torch.int64).reshape(vectors.shape)


# --- per slot -------------------------------------------------------------------------------
_S2 = (s2_to_model, s2_from_model)
_CODECS: dict[str, tuple[Callable, Callable]] = {
    "DEM_DEM": (dem_to_model, dem_from_model),
    "LULC_LULC": (lulc_to_model, lulc_from_model),
    "S1RTC_vh_vv": (s1_to_model, s1_from_model),
    "S2L1C_cloud_mask": (cloud_mask_to_model, cloud_mask_from_model),
}


def _codec(key: str) -> tuple[Callable, Callable]:
    if key not in SLOT_NAMES or key in ("3d_cartesian_lat_lon", "mean_timestamps"):
        raise KeyError(f"{key!r} is not a COP-GEN image slot")
    return _CODECS.get(key, _S2)


def to_model(x: Array, key: str, *, in_db: bool = False) -> Array:
    """Physical values of image slot ``key`` → the VAE's input space (official pre-processing).

    ``in_db`` applies to ``S1RTC_vh_vv`` only. S2 takes DN with COP-GEN's offset convention
    (see :func:`dn_from_reflectance`); LULC takes ESRI codes.
    """
    pre, _ = _codec(key)
    return pre(x, in_db=in_db) if key == "S1RTC_vh_vv" else pre(x)


def from_model(y: Array, key: str) -> Array:
    """The VAE's output space → physical values of image slot ``key`` (official post-processing)."""
    return _codec(key)[1](y)


# --- what the codecs lose: counts for the caller to report ----------------------------------
def _tensor(x: Array) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _count(mask: torch.Tensor) -> int:
    return int(mask.sum())


def dem_floored_count(height: Array) -> int:
    """Input heights ``<= 0`` m (sea level included), which COP-GEN floors to 6e-6 m; NaN is not
    counted."""
    return _count(_tensor(height) <= 0)


def dem_saturated_count(height: Array) -> int:
    """Decoded heights at the 8847.47 m ceiling (the model asked for that much or more)."""
    return _count(_tensor(height) >= DEM_MAX_M)


def s1_saturated_counts(power: Array) -> dict[str, int]:
    """Decoded S1 power at the floor (``min_positive``) and at the ceiling (10 533.68)."""
    p = _tensor(power)
    return {"low": _count(p <= S1_MIN_POWER), "high": _count(p >= S1_MAX_POWER)}


def s2_out_of_range_counts(reflectance: Array) -> dict[str, int]:
    """Decoded S2 reflectance below 0 and above 1 (the codec does not clip; convert its DN with
    :func:`reflectance_from_dn` and the target's offset first)."""
    r = _tensor(reflectance)
    return {"below_0": _count(r < 0), "above_1": _count(r > 1)}
