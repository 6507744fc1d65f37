"""What the two training stages share: their result, and a validation of the final weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geocopgen.training.loop import Trainer, TrainResult


@dataclass
class StageResult:
    """What a stage run leaves: the exported model folder and the loop's record."""

    model_dir: Path
    train: TrainResult
    extra: dict[str, Any] = field(default_factory=dict)


def validate_final(trainer: Trainer, result: TrainResult) -> None:
    """Validate the final weights when the last periodic validation was at an earlier step, so
    every run reports how its exported model validates."""
    if trainer.val_fn is None or not trainer.config.loop.val_every:
        return
    if not result.validation or result.validation[-1]["step"] != trainer.step:
        result.validation.append({"step": trainer.step, **trainer.validate()})
