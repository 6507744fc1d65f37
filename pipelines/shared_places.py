"""Every real raster in ``../shared/data`` as a training place in the COP-GEN layout.

Used by the bundled model's recipe (``train_default_model.py``), its leave-one-place-out
evaluation (``lopo_default_model.py``) and the codec evaluation (``evaluate_codecs.py``).

| place | modalities | where |
|---|---|---|
| 4 TerraMind tiles | S2 L1C, S2 L2A, S1 RTC, DEM, land cover | ``terramind/`` |
| Sen1Floods11, Murcia | S1 (GRD, dB), S2 L1C | ``s1s2/`` |
| 2 Major TOM cells | S2 L2A, cloud mask | ``majortom/`` |
| Virginia | S2 L1C | ``s2/`` |
| 18 OPERA bursts x dates | S1 RTC (linear power → dB) | ``s1rtc_opera/`` |
| 9 DEMs (6 OGGM, Patagonia, Los Angeles, Rome) | DEM | ``dem/`` |

Not used: the two VV-only Sentinel-1 scenes (``s1/``): the S1 slot holds VV and VH together,
and a codec or backbone chip needs both. The Landsat quicklook (``other/``) is not a modality.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from geocopgen.copgen.places import SlotPlace, slot_place
from geocopgen.io import modality_array, open_raster
from geocopgen.modalities import get_modality
from geocopgen.raster.grid import grid_of

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TERRAMIND_TILES = ("282D_485L_3_3", "38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3")
TERRAMIND_DIRS = {
    "s2l1c": "S2L1C", "s2l2a": "S2L2A", "s1rtc": "S1RTC", "dem": "DEM", "lulc": "LULC"
}  # fmt: skip
SPAIN = "sen1floods11_Spain_7370579"
#: The places with two or more co-registered modalities: the leave-one-place-out folds.
PAIRED_PLACES = (*TERRAMIND_TILES, SPAIN)


def _quiet_open(path: Path, modality: str) -> xr.DataArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_raster(path, modality=modality)


def _date_of(arrays: Iterable) -> date | None:
    for a in arrays:
        when = a.attrs.get("datetime")
        if when:
            return date.fromisoformat(str(when)[:10])
    return None


def terramind(tile: str) -> SlotPlace:
    arrays = {
        m: _quiet_open(DATA / "terramind" / d / f"{tile}.tif", m) for m, d in TERRAMIND_DIRS.items()
    }
    return slot_place(tile, arrays, when=_date_of(arrays.values()))


def spain() -> SlotPlace:
    folder = DATA / "s1s2" / SPAIN
    arrays = {
        "s1rtc": _quiet_open(folder / "S1GRD_VV_VH_dB.tif", "s1rtc"),
        "s2l1c": _quiet_open(folder / "S2L1C_13bands.tif", "s2l1c"),
    }
    return slot_place(SPAIN, arrays, when=date(2019, 9, 17))


def majortom() -> list[SlotPlace]:
    out = []
    for product in sorted((DATA / "majortom" / "Core-S2L2A").glob("*/*/*")):
        arrays = {
            "s2l2a": _quiet_open(product, "s2l2a"),
            "cloud_mask": _quiet_open(product / "cloud_mask.tif", "cloud_mask"),
        }
        out.append(slot_place(product.parent.name, arrays, when=_date_of(arrays.values())))
    return out


def virginia() -> SlotPlace:
    return slot_place("virginia_L1C", {"s2l1c": _quiet_open(DATA / "s2" / "virginia_L1C", "s2l1c")})


def opera() -> list[SlotPlace]:
    """Each burst at each date: VV and VH files, linear power → dB, one place."""
    out = []
    for folder in sorted((DATA / "s1rtc_opera").glob("*/*")):
        for vv in sorted(folder.glob("*_VV.tif")):
            burst = re.search(r"T\d+-(\d+)-IW\d", vv.name).group(1)
            with rasterio.open(vv) as a, rasterio.open(str(vv).replace("_VV.", "_VH.")) as b:
                power = np.stack([a.read(1), b.read(1)]).astype(np.float32)
                grid = grid_of(a)
            with np.errstate(divide="ignore", invalid="ignore"):
                db = np.where(power > 0, 10 * np.log10(power), np.nan).astype(np.float32)
            array = modality_array(db, grid, get_modality("s1rtc"), source=str(vv))
            when = date.fromisoformat(folder.name)
            out.append(slot_place(f"opera_{burst}_{folder.name}", {"s1rtc": array}, when=when))
    return out


def dems() -> list[SlotPlace]:
    paths = sorted((DATA / "dem").glob("*.tif")) + sorted((DATA / "dem" / "oggm").glob("*.tif"))
    return [slot_place(p.stem, {"dem": _quiet_open(p, "dem")}) for p in paths]


def all_places(log: Callable[[str], None] = print) -> list[SlotPlace]:
    """Every place, paired ones first."""
    places = [terramind(t) for t in TERRAMIND_TILES] + [spain()]
    places += [*majortom(), virginia(), *opera(), *dems()]
    for p in places:
        log(f"[places] {p.name}: {', '.join(p.modalities)}, {len(p.chip_origins())} chip origins")
    return places
