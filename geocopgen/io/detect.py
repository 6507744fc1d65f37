"""Which modality is this input? Evidence first, band count last, never a guess.

Evidence, strongest first:

1. a ``MODALITY`` tag (geocopgen writes one into every output);
2. band names (descriptions or one-file-per-band names) that are exactly a modality's bands;
3. words in the file name and its two parent folders (``S2L2A``, ``MSIL1C``, ``S1RTC``, ``dem``,
   ``srtm``, ...);
4. the band count, but only where it is unambiguous: 13 → S2 L1C, 12 → S2 L2A;
5. for a two-band float raster with nothing else to go by, its values: both bands' medians in
   the range of Sentinel-1 backscatter in dB (:func:`looks_like_s1_db`; the reader warns that it
   decided so from the values).

One-band rasters are ambiguous by count alone (a DEM, one S1 polarisation, a cloud mask, a
classification...), so without evidence they are refused with :class:`UnknownModalityError`
and the user must name the modality.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocopgen.errors import BandMismatchError, UnknownModalityError
from geocopgen.modalities import MODALITIES, Modality, get_modality

#: Band medians of Sentinel-1 gamma0 in dB over land and water (VV about -10, VH about -17,
#: calm water down to -25; the TerraMind and Sen1Floods11 scenes lie within). Reflectance,
#: indices and heights have medians above -3, so they do not pass for dB.
S1_DB_MEDIAN = (-30.0, -3.0)
#: Share of finite values that must lie where backscatter in dB can (-50 to +20 dB).
S1_DB_SHARE = 0.99

#: Words (lower-case tokens of the last three path parts) that name a modality.
PATH_WORDS: dict[str, str] = {
    "s2l1c": "s2l1c", "l1c": "s2l1c", "msil1c": "s2l1c",
    "s2l2a": "s2l2a", "l2a": "s2l2a", "msil2a": "s2l2a",
    "s1rtc": "s1rtc", "rtc": "s1rtc", "grd": "s1rtc", "sar": "s1rtc", "sentinel1": "s1rtc",
    "dem": "dem", "dsm": "dem", "dtm": "dem", "elevation": "dem", "srtm": "dem", "aster": "dem",
    "glo30": "dem", "glo90": "dem", "copdem": "dem",
    "lulc": "lulc", "landcover": "lulc", "cloud": "cloud_mask", "cloudmask": "cloud_mask",
}  # fmt: skip

_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Detection:
    """A detected modality and the evidence that decided it (shown by ``geocopgen info``)."""

    modality: Modality
    evidence: str


def path_words(path: str | Path, parts: int = 3) -> list[str]:
    """Lower-case alphanumeric tokens of the last ``parts`` components of ``path``."""
    tail = Path(path).parts[-parts:]
    return [tok for part in tail for tok in _TOKEN.findall(Path(part).stem.lower())]


def bands_match(modality: Modality, names: Sequence[str | None]) -> bool:
    """True if ``names`` are exactly the modality's bands (any order, case-insensitive)."""
    got = {str(n).upper() for n in names if n}
    return len(got) == len(names) and got == {b.upper() for b in modality.band_names}


def detect_modality(
    *,
    path: str | Path,
    count: int,
    band_names: Sequence[str | None] = (),
    tags: Mapping[str, str] | None = None,
    stated: str | Modality | None = None,
) -> Detection:
    """Decide the modality of an input, or raise a named error saying what to pass."""
    source = str(path)
    if stated is not None:
        modality = get_modality(stated)
        _check_count(modality, count, source, "as stated")
        return Detection(modality, "stated")

    tags = {k.upper(): v for k, v in (tags or {}).items()}
    if "MODALITY" in tags:
        modality = get_modality(tags["MODALITY"])
        _check_count(modality, count, source, "by its MODALITY tag")
        return Detection(modality, "MODALITY tag")

    names = list(band_names)
    if names and all(names):
        for modality in MODALITIES.values():
            if bands_match(modality, names):
                return Detection(modality, "band names")

    # the file's own name speaks first: a cloud_mask.tif inside an MSIL2A product folder
    words = path_words(path, 1) + path_words(Path(path).parent, 2)
    by_path = [PATH_WORDS[w] for w in words if w in PATH_WORDS]
    if by_path:
        modality = MODALITIES[by_path[0]]
        word = next(w for w in words if w in PATH_WORDS)
        _check_count(modality, count, source, f"by the word {word!r} in its path")
        return Detection(modality, f"path word {word!r}")

    for modality in (MODALITIES["s2l1c"], MODALITIES["s2l2a"]):
        if count == modality.n_bands:
            return Detection(modality, f"band count {count}")

    raise UnknownModalityError(
        f"{source}: cannot tell which modality this {count}-band raster is (no MODALITY tag, band "
        "names or path words, and its band count is not distinctive). geocopgen knows "
        f"{', '.join(MODALITIES)}; if it is one of them, say which: API modality='dem', CLI "
        "--modality dem."
    )


def looks_like_s1_db(sample: np.ndarray) -> str | None:
    """Why a ``(2, h, w)`` float sample looks like Sentinel-1 backscatter in dB, or ``None``."""
    medians = []
    for band in np.asarray(sample, dtype=np.float64):
        valid = band[np.isfinite(band)]
        if valid.size < 100 or np.ptp(valid) == 0:
            return None
        if np.mean((valid >= -50) & (valid <= 20)) < S1_DB_SHARE:
            return None
        medians.append(float(np.median(valid)))
    low, high = S1_DB_MEDIAN
    if not all(low <= m <= high for m in medians):
        return None
    return f"two float bands with medians {medians[0]:.1f} and {medians[1]:.1f}, as dB backscatter"


def _check_count(modality: Modality, count: int, source: str, how: str) -> None:
    if count != modality.n_bands:
        raise BandMismatchError(
            f"{source} is {modality.long_name} {how}, which needs {modality.n_bands} bands "
            f"({', '.join(modality.band_names)}), but it has {count}. Pass the right file, or "
            "name the right modality."
        )
