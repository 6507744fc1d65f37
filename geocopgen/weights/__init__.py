"""Weights shipped with geocopgen.

``default/`` is the bundled demonstration model (a COP-GEN-layout
:class:`~geocopgen.copgen.model.CopgenModel` folder: safetensors + JSON, ``pipeline.json`` naming
its class), trained by ``pipelines/train_default_model.py``; its model card is
``docs/model-card.md``.
"""

from __future__ import annotations

from pathlib import Path

from geocopgen.errors import CheckpointError

DEFAULT_MODEL = Path(__file__).parent / "default"


def resolve_model(name_or_path: str | Path) -> Path | str:
    """``"default"`` → the bundled model folder; anything else is returned unchanged."""
    if str(name_or_path) != "default":
        return name_or_path
    if not (DEFAULT_MODEL / "pipeline.json").is_file():
        raise CheckpointError(
            f"{DEFAULT_MODEL}: the bundled default model is missing from this installation; "
            "train it with `python pipelines/train_default_model.py` or pass a model folder"
        )
    return DEFAULT_MODEL
