"""Codecs: what a file stores → the modality's physical units, and back.

A :class:`Decoding` is the exact, documented recipe (``docs/modalities.md``) for one input:

* Sentinel-2 digital numbers: ``reflectance = (DN + offset) / 10000``; DN 0 is nodata.
* Sentinel-1 linear power: ``dB = 10 * log10(power)``; power <= 0 is nodata.
* Anything already in physical units (reflectance, dB, metres): passed through as float32.

Plus the nodata rules shared by all: the file's declared nodata value(s) are invalid; NaN is invalid
only if declared (``nan_is_nodata``), otherwise a NaN is an error (:class:`NaNInputError`), because
an undeclared NaN usually means a broken processing step, not a mask. Decoding computes in float64
and rounds once to float32, so ``encode(decode(dn)) == dn`` exactly for every 16-bit DN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from geocopgen.errors import NaNInputError
from geocopgen.modalities import (
    Modality,
    db_to_linear,
    dn_to_reflectance,
    linear_to_db,
    reflectance_to_dn,
)

#: How stored values relate to physical units.
PHYSICAL = "physical"  # already reflectance / dB / metres
S2_DN = "s2_dn"  # Sentinel-2 digital numbers, (DN + offset) / 10000
S1_LINEAR = "s1_linear"  # Sentinel-1 linear power, 10 log10
TERRAMIND_CLASSES = "terramind_classes"  # land cover as TerraMind's 0..9 class indices
ENCODINGS = (PHYSICAL, S2_DN, S1_LINEAR, TERRAMIND_CLASSES)
#: The ESRI land-cover code of each TerraMind class index 0..9.
TERRAMIND_TO_ESRI = np.array([0, 1, 2, 4, 5, 7, 8, 9, 10, 11], dtype=np.float64)

#: Digital number Sentinel-2 products use for "no data" (ESA product specification).
S2_NODATA_DN = 0


@dataclass(frozen=True)
class Decoding:
    """Raw stored values ↔ physical units for one input of one modality."""

    modality: Modality
    encoding: str = PHYSICAL
    offset: int = 0
    nodata: tuple[float, ...] = ()
    nan_is_nodata: bool = True
    source: str = field(default="input", compare=False)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; use one of {ENCODINGS}")

    def with_source(self, source: str) -> Decoding:
        return replace(self, source=source)

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        """Boolean mask of raw values that are nodata under this decoding's rules."""
        bad = np.zeros(raw.shape, dtype=bool)
        for value in self.nodata:
            if not np.isnan(value):
                bad |= raw == value
        if raw.dtype.kind == "f":
            nan = np.isnan(raw)
            if nan.any() and not self.nan_is_nodata:
                raise NaNInputError(
                    f"{self.source} contains NaN values ({int(nan.sum())} in the window read) "
                    "but does not declare NaN as its nodata value. Declare it (API: "
                    "nodata=float('nan'); CLI: --nodata nan) to treat NaN as nodata, or fix "
                    "the file."
                )
            bad |= nan | np.isinf(raw)
        if self.encoding == S2_DN:
            bad |= raw <= S2_NODATA_DN  # 0 is nodata; a negative DN cannot be a measurement
        elif self.encoding == S1_LINEAR:
            bad |= raw <= 0  # no dB for zero or negative power (NaN compares False)
        elif self.encoding == TERRAMIND_CLASSES:
            bad |= ~np.isin(raw, np.arange(len(TERRAMIND_TO_ESRI)))
        return bad

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw values → float32 physical units, NaN where invalid."""
        bad = self.invalid(raw)
        values = raw.astype(np.float64, copy=False)
        if self.encoding == S2_DN:
            out = dn_to_reflectance(values, self.offset)
        elif self.encoding == S1_LINEAR:
            out = linear_to_db(np.where(bad, 1.0, values))
        elif self.encoding == TERRAMIND_CLASSES:
            out = TERRAMIND_TO_ESRI[np.where(bad, 0, values).astype(np.int64)]
        else:
            out = values
        out = np.asarray(out, dtype=np.float32)
        out[bad] = np.nan
        return out

    def encode(self, physical: np.ndarray, dtype: str | np.dtype, nodata: float) -> np.ndarray:
        """Physical units → raw values of ``dtype`` (rounded for integers), ``nodata`` where NaN."""
        phys = np.asarray(physical, dtype=np.float64)
        if self.encoding == S2_DN:
            raw = reflectance_to_dn(phys, self.offset)
        elif self.encoding == S1_LINEAR:
            raw = db_to_linear(phys)
        else:
            raw = phys
        dtype = np.dtype(dtype)
        invalid = ~np.isfinite(raw)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            raw = np.clip(np.rint(np.where(invalid, 0, raw)), info.min, info.max)
        raw = raw.astype(dtype)
        raw[invalid] = nodata
        return raw

    def reading_attrs(self) -> dict[str, int | str]:
        """How the raw values were read, as ModalityArray attrs (``modalities.READING_ATTRS``):
        ``s2_offset`` for Sentinel-2, ``s1_scale`` (``"db"`` or ``"linear"``) for Sentinel-1.
        Outputs record them as provenance (``modalities.reading_tags``), since either, guessed
        wrong, silently changes what a model sees."""
        if self.modality.name.startswith("s2"):
            return {"s2_offset": self.offset}
        if self.modality.name.startswith("s1"):
            return {"s1_scale": "linear" if self.encoding == S1_LINEAR else "db"}
        return {}

    def describe(self) -> str:
        """One line saying exactly what decode does (for ``geocopgen info`` and logs)."""
        if self.encoding == S2_DN:
            return f"reflectance = (DN {self.offset:+d}) / 10000; DN 0 and negative DNs are nodata"
        if self.encoding == S1_LINEAR:
            return "dB = 10 * log10(linear power); power <= 0 is nodata"
        if self.encoding == TERRAMIND_CLASSES:
            return "TerraMind class index 0..9 -> ESRI land-cover code"
        return f"values already in {self.modality.units}"


def nodata_values(declared: Sequence[float | None]) -> tuple[float, ...]:
    """The distinct declared nodata values of an input's bands (NaN kept, None dropped)."""
    out: list[float] = []
    for value in declared:
        if value is None:
            continue
        v = float(value)
        if not any((np.isnan(v) and np.isnan(o)) or v == o for o in out):
            out.append(v)
    return tuple(out)
