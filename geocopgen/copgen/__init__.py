"""COP-GEN (the 2026 successor of COP-GEN-Beta): its published layout, and the pieces that run its
weights faithfully inside geocopgen. ``reference/copgen-parity/README.md`` is the spec.

Names are imported from their modules on first use: the layout is plain data that the CLI checks
options against, and should not pull in torch with it.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "COPGEN_SIZES": "published",
    "copgen_backbone": "published",
    "copgen_config": "published",
    "import_copgen_weights": "published",
    "load_copgen_backbone": "published",
    "read_copgen_state_dict": "published",
    "convert_copgen": "convert",
    "load_copgen": "convert",
    "COPGEN_SLOTS": "layout",
    "SLOT_NAMES": "layout",
    "CopgenSlot": "layout",
    "slot": "layout",
    "CopgenModel": "model",
    "detect_lulc_scheme": "normalisation",
    "from_model": "normalisation",
    "to_model": "normalisation",
    "COPGEN_SAMPLER": "sampler",
    "CopgenSamplerPreset": "sampler",
    "copgen_sample": "sampler",
    "convert_vae": "vae",
    "convert_vae_file": "vae",
    "load_vae": "vae",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"geocopgen.copgen.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'geocopgen.copgen' has no attribute {name!r}")
