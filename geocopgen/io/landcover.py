"""Land cover comes in two numberings: ESRI's 10 m class codes (0..11, what COP-GEN's land-cover
slot takes) and TerraMind's class indices 0..9 (the same classes, renumbered, as the TerraMind
tiles store them). The values alone often cannot tell them apart (4 and 9 mean different classes
in each), so the scheme is decided from evidence and refused when there is none: read wrong, a
crop field becomes flooded vegetation without a word (spec C8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from geocopgen.errors import InputError

LulcScheme = Literal["esri", "terramind"]

_ONLY_TERRAMIND = frozenset({3, 6})  # indices of flooded vegetation and bare ground; no ESRI code
_ONLY_ESRI = frozenset({10, 11})  # clouds and rangeland codes; TerraMind indices stop at 9
_LULC_TAGS = ("LULC_SCHEME", "lulc_scheme")


def lulc_scheme_from_tags(tags: Mapping[str, Any] | None) -> LulcScheme | None:
    """The scheme a raster's ``LULC_SCHEME`` tag declares (``esri``/``terramind``), if any."""
    for key in _LULC_TAGS:
        value = str((tags or {}).get(key, "")).strip().lower()
        if value in ("esri", "terramind"):
            return value  # type: ignore[return-value]
    return None


def _present(rasters: Iterable[Any], nodata: float | None) -> set[int]:
    found: set[float] = set()
    for raster in rasters:
        values = np.unique(np.asarray(raster))
        found |= {float(v) for v in values if not np.isnan(v) and v != nodata}
    bad = sorted(v for v in found if v != int(v) or not 0 <= v <= 11)
    if bad:
        raise InputError(
            f"land-cover values {bad[:8]} are neither ESRI codes (0..11) nor TerraMind indices "
            "(0..9); pass nodata= if one of them marks missing data"
        )
    return {int(v) for v in found}


def detect_lulc_scheme(
    *rasters: Any,
    nodata: float | None = None,
    hint: LulcScheme | None = None,
    default: LulcScheme | None = None,
) -> LulcScheme:
    """Whether land-cover rasters hold ESRI codes or TerraMind's 0..9 class indices.

    Pass every raster of one source together: the scheme belongs to the source, and one tile
    with a telling value decides for all. The rule, most reliable first:

    1. ``hint`` (the caller's word, or :func:`lulc_scheme_from_tags`) is used, but a value that
       the hinted scheme cannot hold is an :class:`InputError`;
    2. values 3 or 6 (flooded vegetation and bare ground as indices; not ESRI codes) → TerraMind;
    3. values 10 or 11 (clouds and rangeland codes; above TerraMind's 9) → ESRI;
       both kinds at once is an :class:`InputError`;
    4. otherwise (values within {0, 1, 2, 4, 5, 7, 8, 9}) the two readings differ (4 is crops or
       flooded vegetation, 9 rangeland or snow) and nothing tells: ``default`` if given, else an
       :class:`InputError` that says so. It never guesses silently.

    Values outside 0..11 (other than ``nodata``) are an :class:`InputError`.
    """
    present = _present(rasters, nodata)
    terramind, esri = present & _ONLY_TERRAMIND, present & _ONLY_ESRI
    if terramind and esri:
        raise InputError(
            f"land-cover values mix TerraMind-only indices {sorted(terramind)} and ESRI-only codes "
            f"{sorted(esri)}: the rasters do not share one scheme"
        )
    evidence: LulcScheme | None = "terramind" if terramind else "esri" if esri else None
    if hint is not None:
        if evidence not in (None, hint):
            raise InputError(
                f"land cover declared {hint!r} holds {sorted(terramind or esri)}, which only "
                f"{evidence!r} rasters hold"
            )
        return hint
    if evidence or default:
        return evidence or default  # type: ignore[return-value]
    raise InputError(
        f"cannot tell ESRI codes from TerraMind class indices: the values {sorted(present)} are "
        "valid in both and mean different classes (4: flooded vegetation or crops, 9: snow/ice or "
        "rangeland). Pass scheme='esri' or 'terramind' (or a LULC_SCHEME tag), or detect over "
        "more rasters of the same source"
    )
