"""COP-GEN (the 2026 successor of COP-GEN-Beta): its published layout, and the pieces that run its
weights faithfully inside geocopgen. ``reference/copgen-parity/README.md`` is the spec."""

from geocopgen.copgen.backbone import (
    COPGEN_SIZES,
    copgen_backbone,
    copgen_config,
    import_copgen_weights,
    load_copgen_backbone,
    read_copgen_state_dict,
)
from geocopgen.copgen.convert import convert_copgen
from geocopgen.copgen.layout import COPGEN_SLOTS, SLOT_NAMES, CopgenSlot, slot
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.normalisation import detect_lulc_scheme, from_model, to_model
from geocopgen.copgen.sampler import COPGEN_SAMPLER, CopgenSamplerPreset, copgen_sample
from geocopgen.copgen.vae import convert_vae, convert_vae_file, load_vae

__all__ = [
    "COPGEN_SAMPLER",
    "COPGEN_SIZES",
    "COPGEN_SLOTS",
    "SLOT_NAMES",
    "CopgenModel",
    "CopgenSamplerPreset",
    "CopgenSlot",
    "convert_copgen",
    "convert_vae",
    "convert_vae_file",
    "copgen_backbone",
    "copgen_config",
    "copgen_sample",
    "detect_lulc_scheme",
    "from_model",
    "import_copgen_weights",
    "load_copgen_backbone",
    "load_vae",
    "read_copgen_state_dict",
    "slot",
    "to_model",
]
