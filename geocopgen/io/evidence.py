"""How raw values are stored, decided from evidence: the Sentinel-2 DN offset and the Sentinel-1
scale (dB or linear power), from what was stated, metadata, path words and a pixel sample.

Files (:mod:`geocopgen.io.readers`) and xarray inputs (:mod:`geocopgen.io.xarray_input`) ask the
same questions; the answers live here so neither imports the other.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geocopgen.errors import ConfigError, GeoCopGenWarning, InputError, OffsetWarning, warn
from geocopgen.io.detect import path_words
from geocopgen.io.landcover import detect_lulc_scheme, lulc_scheme_from_tags
from geocopgen.modalities import S2_OFFSET_DN, s2_offset

#: Fraction of sampled visible-band DNs below 1000 that proves there is no +1000 offset.
DARK_FRACTION = 0.05


def decide_s2_offset(
    given: int | None,
    *,
    product_id: str | None,
    tags: Mapping[str, Any],
    sample: Callable[[Sequence[str]], np.ndarray],
    source: str,
) -> tuple[int, str]:
    """The Sentinel-2 DN offset and the evidence for it (see ``docs/modalities.md``)."""
    if given is not None:
        if given not in (0, S2_OFFSET_DN):
            raise ConfigError(
                f"{source}: offset={given} is not a Sentinel-2 DN offset; use 0, or -1000 for "
                "products of processing baseline 04.00 (from 2022-01-25) on."
            )
        return int(given), "given"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OffsetWarning)
        off = s2_offset(product_id=product_id, tags=tags, source=source)
    if not any(issubclass(w.category, OffsetWarning) for w in caught):
        return off, _metadata_evidence(product_id, tags)
    dn = sample(("B02", "B03", "B04")).astype(np.float64)
    valid = dn[(dn > 0)]
    if valid.size:
        dark = float(np.mean(valid < -S2_OFFSET_DN))
        if dark >= DARK_FRACTION:
            return 0, (
                f"{dark:.0%} of sampled B02-B04 DNs are below 1000, impossible with the +1000 "
                "offset"
            )
    off = s2_offset(product_id=product_id, tags=tags, source=source)  # warns
    return off, "no evidence; assumed 0 (override with offset=)"


def _metadata_evidence(product_id: str | None, tags: Mapping[str, Any]) -> str:
    keys = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "boa_add_offset", "radio_add_offset")
    for key in keys:
        if key in tags:
            return f"{key} tag"
    if product_id:
        m = re.search(r"_N(\d{2})(\d{2})_", product_id)
        if m and m.group(1) != "99":
            return f"processing baseline N{m.group(1)}{m.group(2)} in the product id"
        m = re.search(r"(?:^|_)(\d{8})T\d{6}_", product_id + "_")
        if m:
            return f"acquisition date {m.group(1)} in the product id"
    return "acquisition date tag"


def decide_lulc_scheme(
    given: str,
    *,
    path: Path,
    tags: Mapping[str, Any],
    sample: Callable[[Sequence[str]], np.ndarray],
    nodata: Sequence[float],
) -> tuple[str, str]:
    """``"esri"`` or ``"terramind"`` for a land-cover raster, and why: stated; a ``LULC_SCHEME``
    tag or the word ``terramind`` in its path (checked against its values); its values alone
    (see :mod:`geocopgen.io.landcover`). Refused with a clear line when nothing tells."""
    if given not in ("auto", "esri", "terramind"):
        raise ConfigError(f"lulc_scheme must be 'auto', 'esri' or 'terramind', got {given!r}")
    hint = None if given == "auto" else given
    why = "given"
    if hint is None:
        hint = lulc_scheme_from_tags(tags)
        why = "LULC_SCHEME tag"
    if hint is None and "terramind" in path_words(path):
        hint, why = "terramind", "'terramind' in the path"
    values = sample(("land_cover",))
    missing = next((v for v in nodata if not np.isnan(v)), None)
    try:
        scheme = detect_lulc_scheme(values, nodata=missing, hint=hint)
    except InputError as exc:
        raise InputError(
            f"{path}: {exc}. Say which (API lulc_scheme='esri' or 'terramind', CLI --lulc-scheme)."
        ) from None
    return scheme, why if hint is not None else "its values"


def decide_s1_scale(
    given: str,
    *,
    path: Path,
    tags: Mapping[str, Any],
    sample: Callable[[Sequence[str]], np.ndarray],
    nodata: Sequence[float],
    source: str,
) -> tuple[str, str]:
    """``"db"`` or ``"linear"``, and why: stated; path words/tags; the sign of the values."""
    if given != "auto":
        return given, "given"
    words = set(path_words(path)) | {str(v).lower() for v in tags.values()}
    if "db" in words:
        return "db", "'db' in the path or tags"
    if words & {"linear", "lin", "power", "pwr"}:
        return "linear", "'linear'/'power' in the path or tags"
    values = sample(("VV", "VH")).astype(np.float64).ravel()
    valid = values[np.isfinite(values)]
    for nd in nodata:
        valid = valid[valid != nd]
    if valid.size:
        negative = float(np.mean(valid < 0))
        if negative > 0.01:
            return "db", f"{negative:.0%} of sampled values are negative (dB)"
        return "linear", "no negative values (linear power cannot be negative)"
    warn(
        f"{source}: cannot tell whether Sentinel-1 values are dB or linear power; assuming dB. "
        "Pass s1_scale='linear' (CLI --s1-scale linear) if they are linear.",
        GeoCopGenWarning,
    )
    return "db", "no evidence; assumed dB"
