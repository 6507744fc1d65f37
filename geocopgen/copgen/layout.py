"""The twelve COP-GEN slots, in the order the published network uses.

The official config lists modalities in a human order, but the network is built from a sorted
``ConfigDict``, so patch embeddings, output heads, time tokens and ``pos_embed`` blocks follow
Python's string sort of the slot keys (digits, then upper case, then lower case). Everything in
geocopgen that indexes a COP-GEN network goes through :data:`COPGEN_SLOTS` so that this order is
written down once.

Every image chip covers 1920 m on the ground: 192 px at 10 m, 96 px at 20 m, 32 px at 60 m and
64 px for the 30 m DEM; each VAE downsamples by 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geocopgen.modalities import MODALITIES

#: Ground size of one chip, for every image slot.
CHIP_GROUND_SIZE_M = 1920.0


@dataclass(frozen=True)
class CopgenSlot:
    """One slot of the COP-GEN token sequence.

    ``bands`` is the VAE's channel order (the config's ``bands`` list, which differs from the
    order in the key name); ``resolution`` is the ground sample distance in metres (``None`` for
    scalar slots); ``scale_factor`` multiplies the VAE posterior into the backbone's latent space.
    """

    key: str
    kind: Literal["image", "scalar"]
    latent_shape: tuple[int, int, int]
    patch_size: int
    bands: tuple[str, ...] = ()
    chip_px: int = 0
    resolution: float | None = None
    scale_factor: float | None = None
    image_channels: int = 0

    @property
    def n_tokens(self) -> int:
        """Patch tokens this slot contributes (a scalar slot: one token per component)."""
        _, h, w = self.latent_shape
        return (h // self.patch_size) * (w // self.patch_size)


def _image(
    key: str, bands: tuple[str, ...], chip_px: int, resolution: float, sf: float, channels: int = 0
) -> CopgenSlot:
    side = chip_px // 8
    return CopgenSlot(
        key=key,
        kind="image",
        latent_shape=(8, side, side),
        patch_size=2,
        bands=bands,
        chip_px=chip_px,
        resolution=resolution,
        scale_factor=sf,
        image_channels=channels or len(bands),
    )


def _scalar(key: str, components: tuple[str, ...]) -> CopgenSlot:
    return CopgenSlot(
        key=key, kind="scalar", latent_shape=(1, 1, 3), patch_size=1, bands=components
    )


#: The published slots, in network order (spec A1).
COPGEN_SLOTS: tuple[CopgenSlot, ...] = (
    _scalar("3d_cartesian_lat_lon", ("x", "y", "z")),
    _image("DEM_DEM", ("DEM",), 64, 30.0, 0.404247),
    _image("LULC_LULC", ("LULC",), 192, 10.0, 0.464794, channels=10),
    _image("S1RTC_vh_vv", ("vv", "vh"), 192, 10.0, 0.633804),
    _image("S2L1C_B01_B09_B10", ("B01", "B09", "B10"), 32, 60.0, 0.565812),
    _image("S2L1C_B02_B03_B04_B08", ("B04", "B03", "B02", "B08"), 192, 10.0, 0.772514),
    _image(
        "S2L1C_B05_B06_B07_B11_B12_B8A",
        ("B05", "B06", "B07", "B8A", "B11", "B12"),
        96,
        20.0,
        0.765817,
    ),
    _image("S2L1C_cloud_mask", ("cloud_mask",), 192, 10.0, 0.557045, channels=4),
    _image("S2L2A_B01_B09", ("B01", "B09"), 32, 60.0, 0.571367),
    _image("S2L2A_B02_B03_B04_B08", ("B04", "B03", "B02", "B08"), 192, 10.0, 0.853416),
    _image(
        "S2L2A_B05_B06_B07_B11_B12_B8A",
        ("B05", "B06", "B07", "B8A", "B11", "B12"),
        96,
        20.0,
        0.567267,
    ),
    _scalar("mean_timestamps", ("sin_doy", "cos_doy", "year")),
)

#: Slot keys in network order.
SLOT_NAMES: tuple[str, ...] = tuple(s.key for s in COPGEN_SLOTS)


def slot(key: str) -> CopgenSlot:
    """The slot named ``key`` (a ``KeyError`` naming the valid keys otherwise)."""
    for s in COPGEN_SLOTS:
        if s.key == key:
            return s
    raise KeyError(f"no COP-GEN slot {key!r}; the slots are {', '.join(SLOT_NAMES)}")


#: geocopgen's modalities and the COP-GEN image slots that hold them (finest group first).
MODALITY_SLOTS: dict[str, tuple[str, ...]] = {
    "s2l2a": ("S2L2A_B02_B03_B04_B08", "S2L2A_B05_B06_B07_B11_B12_B8A", "S2L2A_B01_B09"),
    "s2l1c": ("S2L1C_B02_B03_B04_B08", "S2L1C_B05_B06_B07_B11_B12_B8A", "S2L1C_B01_B09_B10"),
    "s1rtc": ("S1RTC_vh_vv",),
    "dem": ("DEM_DEM",),
    "lulc": ("LULC_LULC",),
    "cloud_mask": ("S2L1C_cloud_mask",),
}
#: The scalar slots: computed per chip from the grid (lat/lon) or from metadata (the date).
LATLON_SLOT = "3d_cartesian_lat_lon"
DATE_SLOT = "mean_timestamps"


def modality_of_slot(key: str) -> str:
    """The geocopgen modality an image slot belongs to."""
    for modality, keys in MODALITY_SLOTS.items():
        if key in keys:
            return modality
    raise KeyError(f"{key} is not an image slot of a geocopgen modality")


def registry_band(s: CopgenSlot, band: str) -> str:
    """A slot band's name in geocopgen's registry (``vv`` → ``VV``, ``DEM`` → ``elevation``)."""
    return _REGISTRY_BANDS.get(s.key, band.upper())


def registry_bands(s: CopgenSlot) -> tuple[str, ...]:
    """An image slot's bands by their registry names, in the registry's order: band-number
    order for Sentinel-2 (``B05 B06 B07 B8A B11 B12``, B8A in B08's place, as products and the
    merged outputs list them), not the VAE's channel order."""
    names = [registry_band(s, b) for b in s.bands]
    registry = MODALITIES.get(modality_of_slot(s.key)) if s.kind == "image" else None
    order = registry.band_names if registry is not None else names
    return tuple(sorted(names, key=lambda b: order.index(b) if b in order else len(order)))


_REGISTRY_BANDS = {
    "DEM_DEM": "elevation",
    "LULC_LULC": "land_cover",
    "S2L1C_cloud_mask": "cloud_class",
}
