"""The modality registry: what each Copernicus modality is, in physical units and in model units.

Every modality has exactly one documented, invertible mapping between its *physical* values and
the model's normalised range (``docs/modalities.md`` lists the constants)::

    normalised = (physical - center[band]) / scale[band]
    physical   = normalised * scale[band] + center[band]

Physical units are fixed per modality: top-of-atmosphere (L1C) or bottom-of-atmosphere (L2A)
reflectance for Sentinel-2, gamma0 backscatter in dB for Sentinel-1 RTC, and metres above the
geoid for the DEM. Getting *to* physical units from what a file stores (Sentinel-2 digital
numbers with a processing-baseline offset, Sentinel-1 linear power) is done by the helpers at the
bottom of this module, so the raw-to-physical step is explicit and overridable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import numpy as np

from geocopgen.errors import BandMismatchError, OffsetWarning, UnknownModalityError, warn

ArrayT = TypeVar("ArrayT")

#: Index order of the official COP-GEN-Beta weights (patch embeds, heads, time tokens).
OFFICIAL_ORDER: tuple[str, ...] = ("dem", "s1rtc", "s2l1c", "s2l2a")

#: Sentinel-2 processing baseline 04.00 (from 2022-01-25) adds +1000 to every digital number.
S2_OFFSET_BASELINE = (4, 0)
S2_OFFSET_START = date(2022, 1, 25)
S2_OFFSET_DN = -1000
S2_QUANTIFICATION = 10000.0


@dataclass(frozen=True)
class Band:
    """One band: its name, native ground resolution and normalisation constants."""

    name: str
    resolution: float
    center: float
    scale: float
    description: str = ""


@dataclass(frozen=True)
class Modality:
    """A modality as geocopgen models it.

    ``resolution`` is the grid the model sees this modality on (all bands resampled to it);
    ``native_resolution`` is the resolution of the product users think of (DEM: 30 m), used when
    output "at native resolution" is asked for. ``domain`` is the physically possible range of
    the values (``docs/modalities.md`` says why each bound): decoded outputs outside it are
    clipped and counted (:mod:`geocopgen.domain`).
    """

    name: str
    long_name: str
    bands: tuple[Band, ...]
    units: str
    resolution: float
    native_resolution: float
    nodata: float
    dtype: str = "float32"
    resampling: str = "bilinear"
    domain: tuple[float, float] = (-np.inf, np.inf)

    @property
    def categorical(self) -> bool:
        """Class codes, not measurements: resampled by nearest/mode, never blended or clipped
        by geocopgen's own codecs (only COP-GEN models take them)."""
        return self.units == "class"

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def band_index(self, name: str) -> int:
        try:
            return self.band_names.index(name.upper() if self.name.startswith("s2") else name)
        except ValueError:
            raise BandMismatchError(
                f"{self.long_name} has no band {name!r}; its bands are {', '.join(self.band_names)}"
            ) from None

    def _constants(self, like: Any, axis: int, ndim: int) -> tuple[Any, Any]:
        shape = [1] * ndim
        shape[axis] = self.n_bands
        center = np.asarray([b.center for b in self.bands], dtype=np.float32).reshape(shape)
        scale = np.asarray([b.scale for b in self.bands], dtype=np.float32).reshape(shape)
        if _is_torch(like):
            import torch

            return (
                torch.as_tensor(center, device=like.device, dtype=like.dtype),
                torch.as_tensor(scale, device=like.device, dtype=like.dtype),
            )
        return center, scale

    def _check_bands(self, x: Any, axis: int) -> int:
        ndim = x.ndim
        ax = axis % ndim
        if x.shape[ax] != self.n_bands:
            raise BandMismatchError(
                f"{self.long_name} needs {self.n_bands} bands on axis {axis}, got {x.shape[ax]}"
            )
        return ax

    def normalize(self, physical: ArrayT, axis: int = 0, *, out: Any = None) -> ArrayT:
        """Physical units → model units. Works on numpy, dask and torch arrays.

        ``out`` (numpy only; may be ``physical`` itself) takes the result without temporaries:
        chip batches are large, and a fresh array per operation costs as much as the arithmetic.
        """
        ax = self._check_bands(physical, axis)
        center, scale = self._constants(physical, ax, physical.ndim)
        if out is None:
            return (physical - center) / scale
        np.subtract(physical, center, out=out)
        return np.divide(out, scale, out=out)

    def model_input(
        self, physical: np.ndarray, axis: int = 0, *, finite: np.ndarray | None = None
    ) -> np.ndarray:
        """Physical float32 values → what an autoencoder is fed: normalised, in place, with every
        invalid (non-finite) value set to 0, the band's centre.

        The one rule for training, the latent store, evaluation and translation. It is applied
        per value, not per pixel: a pixel whose B10 is missing keeps its other twelve bands,
        because they are real evidence. ``finite`` (``np.isfinite(physical)``) may be passed when
        the caller has it already.
        """
        finite = np.isfinite(physical) if finite is None else finite
        self.normalize(physical, axis=axis, out=physical)
        np.copyto(physical, 0.0, where=~finite)
        return physical

    def denormalize(self, normalised: ArrayT, axis: int = 0) -> ArrayT:
        """Model units → physical units; the exact inverse of :meth:`normalize`."""
        ax = self._check_bands(normalised, axis)
        center, scale = self._constants(normalised, ax, normalised.ndim)
        return normalised * scale + center


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


# --- the four modalities --------------------------------------------------------------------
# Physical domains (the bounds, and why, are in docs/modalities.md):
#: reflectance cannot be negative; the brightest targets (fresh snow, cloud tops at low sun)
#: reach about 1.2-1.5 after the sun-angle normalisation, so 1.6 only catches artefacts.
REFLECTANCE_DOMAIN = (0.0, 1.6)
#: gamma0 in dB: -60 is far below the IW noise floor (NESZ about -22 dB), +30 above the
#: brightest urban double bounces.
S1_DB_DOMAIN = (-60.0, 30.0)
#: metres above the geoid: the Dead Sea shore (-430 m) to Everest (8849 m), with a margin.
ELEVATION_DOMAIN = (-500.0, 9000.0)

# Sentinel-2 constants: per-band mean and standard deviation of reflectance over the TerraMind
# sample tiles, rounded to 0.01 and frozen. They only need to be fixed and documented, not exact.
_S2_RES = {
    "B01": 60.0, "B02": 10.0, "B03": 10.0, "B04": 10.0, "B05": 20.0, "B06": 20.0, "B07": 20.0,
    "B08": 10.0, "B8A": 20.0, "B09": 60.0, "B10": 60.0, "B11": 20.0, "B12": 20.0,
}  # fmt: skip
_S2_DESC = {
    "B01": "coastal aerosol", "B02": "blue", "B03": "green", "B04": "red",
    "B05": "red edge 1", "B06": "red edge 2", "B07": "red edge 3", "B08": "NIR",
    "B8A": "narrow NIR", "B09": "water vapour", "B10": "SWIR cirrus", "B11": "SWIR 1",
    "B12": "SWIR 2",
}  # fmt: skip
_L1C_STATS = {
    "B01": (0.31, 0.24), "B02": (0.28, 0.23), "B03": (0.24, 0.19), "B04": (0.25, 0.22),
    "B05": (0.28, 0.22), "B06": (0.33, 0.21), "B07": (0.35, 0.20), "B08": (0.34, 0.20),
    "B8A": (0.37, 0.20), "B09": (0.18, 0.14), "B10": (0.05, 0.05), "B11": (0.23, 0.10),
    "B12": (0.18, 0.09),
}  # fmt: skip
_L2A_STATS = {
    "B01": (0.20, 0.28), "B02": (0.20, 0.28), "B03": (0.20, 0.25), "B04": (0.22, 0.26),
    "B05": (0.25, 0.25), "B06": (0.29, 0.23), "B07": (0.31, 0.21), "B08": (0.33, 0.23),
    "B8A": (0.32, 0.20), "B09": (0.32, 0.19), "B11": (0.20, 0.13), "B12": (0.15, 0.11),
}  # fmt: skip


def _s2_bands(stats: Mapping[str, tuple[float, float]]) -> tuple[Band, ...]:
    return tuple(Band(n, _S2_RES[n], c, s, _S2_DESC[n]) for n, (c, s) in stats.items())


S2L1C = Modality(
    name="s2l1c",
    long_name="Sentinel-2 L1C",
    bands=_s2_bands(_L1C_STATS),
    units="top-of-atmosphere reflectance",
    resolution=10.0,
    native_resolution=10.0,
    nodata=float("nan"),
    domain=REFLECTANCE_DOMAIN,
)
S2L2A = Modality(
    name="s2l2a",
    long_name="Sentinel-2 L2A",
    bands=_s2_bands(_L2A_STATS),
    units="bottom-of-atmosphere reflectance",
    resolution=10.0,
    native_resolution=10.0,
    nodata=float("nan"),
    domain=REFLECTANCE_DOMAIN,
)
S1RTC = Modality(
    name="s1rtc",
    long_name="Sentinel-1 RTC",
    bands=(
        Band("VV", 10.0, -12.0, 5.0, "gamma0 VV backscatter"),
        Band("VH", 10.0, -19.0, 5.0, "gamma0 VH backscatter"),
    ),
    units="dB",
    resolution=10.0,
    native_resolution=10.0,
    nodata=float("nan"),
    domain=S1_DB_DOMAIN,
)
DEM = Modality(
    name="dem",
    long_name="DEM",
    bands=(Band("elevation", 30.0, 500.0, 1000.0, "height above the geoid"),),
    units="m",
    resolution=10.0,
    native_resolution=30.0,
    nodata=-9999.0,
    domain=ELEVATION_DOMAIN,
)


# Categorical modalities (COP-GEN's land cover and cloud mask slots). Their "physical" values are
# class codes; center 0, scale 1 only because the registry needs constants for every band.
def _categorical(name: str, long_name: str, band: str, description: str) -> Modality:
    return Modality(
        name=name,
        long_name=long_name,
        bands=(Band(band, 10.0, 0.0, 1.0, description),),
        units="class",
        resolution=10.0,
        native_resolution=10.0,
        nodata=255.0,
        dtype="uint8",
        resampling="nearest",
    )


LULC = _categorical(
    "lulc", "land cover, ESRI 10 m classes", "land_cover", "ESRI land-cover class code"
)
CLOUD_MASK = _categorical(
    "cloud_mask", "Sentinel-2 cloud mask", "cloud_class", "0 clear, 1 thick cloud, 2 thin, 3 shadow"
)

MODALITIES: dict[str, Modality] = {m.name: m for m in (DEM, S1RTC, S2L1C, S2L2A, LULC, CLOUD_MASK)}

_ALIASES = {
    "l1c": "s2l1c", "s2_l1c": "s2l1c", "s2-l1c": "s2l1c", "sentinel-2 l1c": "s2l1c",
    "l2a": "s2l2a", "s2_l2a": "s2l2a", "s2-l2a": "s2l2a", "sentinel-2 l2a": "s2l2a",
    "s1": "s1rtc", "s1_rtc": "s1rtc", "s1-rtc": "s1rtc", "sentinel-1 rtc": "s1rtc",
    "elevation": "dem", "dsm": "dem",
    "landcover": "lulc", "land_cover": "lulc", "land cover": "lulc",
    "cloud": "cloud_mask", "cloudmask": "cloud_mask", "clouds": "cloud_mask",
}  # fmt: skip


def get_modality(name: str | Modality) -> Modality:
    """Look a modality up by name or alias (case-insensitive)."""
    if isinstance(name, Modality):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return MODALITIES[key]
    except KeyError:
        raise UnknownModalityError(
            f"unknown modality {name!r}; geocopgen knows {', '.join(MODALITIES)}"
        ) from None


# --- raw storage → physical units -----------------------------------------------------------
_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})_")
_PRODUCT_DATES_RE = re.compile(r"(?:^|_)(\d{8})T\d{6}_")  # ESA and Earth Engine ids


#: The ModalityArray attrs that say how raw values were read (``Decoding.reading_attrs``).
READING_ATTRS = ("s2_offset", "s1_scale")


def reading_tags(attrs: Mapping[str, Any], of: str) -> dict[str, Any]:
    """Output provenance tags for the :data:`READING_ATTRS` in ``attrs``, e.g.
    ``S2_OFFSET_OF_INPUT`` or ``S1_SCALE_OF_S1RTC``. Here, beside the raw-to-physical rules,
    because every layer that writes an output (the mosaic writer, both translation paths)
    records them."""
    return {f"{key.upper()}_OF_{of}": attrs[key] for key in READING_ATTRS if key in attrs}


def s2_offset(
    *,
    product_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    acquired: str | date | datetime | None = None,
    source: str = "input",
) -> int:
    """Decide the DN offset of a Sentinel-2 product (0 or -1000), most reliable evidence first.

    1. explicit ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` tags;
    2. the processing baseline in the product id (``_N0400_`` and later carry the offset). The
       placeholder ``N9999`` of products made outside the ground segment says nothing, so it
       falls through to the acquisition date (the Major TOM cell ``199U_1099R``, acquired 2020
       and processed 2023 as ``N9999``, has dark-water DNs below 100: no offset);
    3. the acquisition date (in the product id, the tags, or given) against 2022-01-25.

    With no evidence it warns (:class:`OffsetWarning`) and returns 0; pass ``offset=`` to the
    reader to override.
    """
    tags = dict(tags or {})
    for key in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "boa_add_offset", "radio_add_offset"):
        if key in tags:
            return int(float(tags[key]))
    product_id = product_id or tags.get("PRODUCT_ID") or tags.get("product_id")
    if product_id:
        m = _BASELINE_RE.search(product_id)
        if m and m.group(1) != "99":
            baseline = (int(m.group(1)), int(m.group(2)))
            return S2_OFFSET_DN if baseline >= S2_OFFSET_BASELINE else 0
        dates = _PRODUCT_DATES_RE.findall(product_id + "_")
        if dates:
            return S2_OFFSET_DN if _to_date(dates[0]) >= S2_OFFSET_START else 0
    acquired = acquired or tags.get("datetime") or tags.get("DATETIME")
    if acquired:
        return S2_OFFSET_DN if _to_date(acquired) >= S2_OFFSET_START else 0
    warn(
        f"{source}: cannot tell whether the Sentinel-2 digital numbers carry the +1000 offset of "
        "processing baseline 04.00 (no offset tag, product id or date); assuming none. "
        "Pass offset=-1000 (CLI: --s2-offset -1000) if the product is from 2022-01-25 or later.",
        OffsetWarning,
    )
    return 0


def _to_date(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{8}", text):
        return datetime.strptime(text, "%Y%m%d").date()
    return datetime.fromisoformat(text.replace("Z", "+00:00")[:19]).date()


def dn_to_reflectance(dn: ArrayT, offset: int) -> ArrayT:
    """Sentinel-2 digital numbers → reflectance: ``(DN + offset) / 10000``."""
    return (dn + offset) / S2_QUANTIFICATION


def reflectance_to_dn(reflectance: ArrayT, offset: int) -> ArrayT:
    """Inverse of :func:`dn_to_reflectance` (not rounded: callers choose the dtype)."""
    return reflectance * S2_QUANTIFICATION - offset


def linear_to_db(power: ArrayT) -> ArrayT:
    """Sentinel-1 linear power (gamma0) → dB. Non-positive power has no dB value (NaN)."""
    if _is_torch(power):
        import torch

        return 10.0 * torch.log10(torch.where(power > 0, power, torch.nan))
    p = np.asarray(power, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(np.where(p > 0, p, np.nan))


def db_to_linear(db: ArrayT) -> ArrayT:
    """dB → linear power; the inverse of :func:`linear_to_db`."""
    return 10.0 ** (db / 10.0)
