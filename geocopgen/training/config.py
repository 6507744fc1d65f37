"""Training configuration: every knob named, loaded strictly from YAML or TOML.

A misspelt key that is silently ignored costs a GPU-week, so unknown keys are errors that list
the keys that do exist. Sections are frozen dataclasses; :func:`config_from_dict` builds them
recursively and :func:`config_to_dict` writes them back for checkpoints and resume checks.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from geocopgen.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up, then constant (the COP-GEN-Beta recipe, scaled down)."""

    lr: float = 2e-4
    weight_decay: float = 0.03
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    warmup_steps: int = 100
    grad_clip: float = 1.0


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the weights: the copy that is evaluated and shipped."""

    decay: float = 0.999
    warmup: bool = True  # decay ramps as (1 + step) / (10 + step) until it reaches ``decay``


@dataclass(frozen=True)
class LoopConfig:
    """How long, how big, how often."""

    steps: int = 1000
    batch_size: int = 16  # global batch: split evenly across DDP ranks
    seed: int = 0
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    log_every: int = 10
    val_every: int = 0  # 0: no periodic validation
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    progress: bool = True
    minutes: float = 0.0  # wall-time budget of training (over resumptions); 0: steps only


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` and ``data`` are free-form sections owned by the stage."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def config_from_dict(cls: type[T], values: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``, refusing keys it does not have."""
    values = dict(values or {})
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        valid = ", ".join(sorted(names))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are {valid}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = config_from_dict(hint, value, f"{where}.{name}")
        elif getattr(hint, "__origin__", None) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The inverse of :func:`config_from_dict` (tuples become lists, as in YAML)."""
    out = dataclasses.asdict(config)

    def listify(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: listify(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [listify(x) for x in v]
        return v

    return listify(out)


def load_config(path: str | Path, cls: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into ``cls``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from exc
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return config_from_dict(cls, values, where=str(path))
