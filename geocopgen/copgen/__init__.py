"""COP-GEN (the 2026 successor of COP-GEN-Beta): its published layout, and the pieces that run its
weights faithfully inside geocopgen. ``reference/copgen-parity/README.md`` is the spec."""

from geocopgen.copgen.layout import COPGEN_SLOTS, SLOT_NAMES, CopgenSlot, slot

__all__ = ["COPGEN_SLOTS", "SLOT_NAMES", "CopgenSlot", "slot"]

# VAEs and normalisations
from geocopgen.copgen.normalisation import detect_lulc_scheme, from_model, to_model
from geocopgen.copgen.vae import convert_vae, convert_vae_file, load_vae

__all__ += [
    "convert_vae",
    "convert_vae_file",
    "detect_lulc_scheme",
    "from_model",
    "load_vae",
    "to_model",
]
