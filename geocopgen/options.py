"""The three option values of a raster operation: how to read, how to sample, where to write.

Each is a small frozen dataclass, validated once when it is built (at the API boundary), then
handed on unchanged: the planner, the translator and the writer read the fields they need and no
function forwards ``cog``/``overwrite``/``steps`` by hand. The API's flat keywords
(``translate(..., steps=8, cog=True, s2_offset=0)``) are sorted into these values by
:func:`split_options`, so a keyword means the same in every function that takes it, and a misspelt
one is an error that lists the valid names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from geocopgen.errors import ConfigError
from geocopgen.precision import check_precision

Reduce = Literal["mean_std", "samples"]
#: Sentinel-2 DN offsets geocopgen knows: none, or the +1000 of processing baseline 04.00+.
S2_OFFSETS = (0, -1000)
S1_SCALES = ("auto", "db", "linear")
S2_DN_POLICIES = ("model", "stored", "reflectance")


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read into physical units (applied to every input of an operation).

    ``s2_offset``: the Sentinel-2 DN offset (``None``: decided from metadata, else 0 or -1000);
    ``s1_scale``: whether Sentinel-1 files hold dB or linear power (``"auto"`` decides);
    ``nodata``: overrides the declared nodata of the source (``float("nan")`` declares NaN);
    ``date``: the acquisition date (ISO ``YYYY-MM-DD``) where the inputs do not carry one (a
    COP-GEN model conditions on it); ``s2_dn``: which digital numbers a COP-GEN model is given
    for Sentinel-2 reflectance, ``"model"`` (default: what the model says it was trained on),
    ``"stored"`` (as the product stored them, +1000 from processing baseline 04.00: what the
    published COP-GEN was trained on) or ``"reflectance"`` (reflectance x 10 000);
    ``lulc_scheme``: whether land cover holds ESRI codes or TerraMind class indices (``"auto"``
    decides from tags, path and values, and refuses when nothing tells).
    """

    s2_offset: int | None = None
    s1_scale: str = "auto"
    nodata: float | None = None
    date: str | None = None
    s2_dn: str = "model"
    lulc_scheme: str = "auto"

    def __post_init__(self) -> None:
        if self.s2_offset is not None and self.s2_offset not in S2_OFFSETS:
            raise ConfigError(
                f"s2_offset must be 0, -1000 or None (decided from metadata), "
                f"got {self.s2_offset!r}"
            )
        if self.s1_scale not in S1_SCALES:
            raise ConfigError(f"s1_scale must be 'auto', 'db' or 'linear', got {self.s1_scale!r}")
        if self.lulc_scheme not in ("auto", "esri", "terramind"):
            raise ConfigError(
                f"lulc_scheme must be 'auto', 'esri' or 'terramind', got {self.lulc_scheme!r}"
            )
        if self.s2_dn not in S2_DN_POLICIES:
            raise ConfigError(
                f"s2_dn must be 'model', 'stored' or 'reflectance', got {self.s2_dn!r}"
            )
        if self.date is not None:
            try:
                date.fromisoformat(str(self.date)[:10])
            except ValueError:
                raise ConfigError(f"date must be YYYY-MM-DD, got {self.date!r}") from None


@dataclass(frozen=True)
class TranslateOptions:
    """How to sample. ``steps=None`` takes the model's default; ``overlap`` is in pixels
    (default 1/4 of a chip); ``batch_size`` counts chip-samples per backbone call;
    ``reduce``: with several samples, write per-pixel mean and standard deviation
    (``"mean_std"``) or every sample (``"samples"``); ``posterior``: a COP-GEN model encodes
    conditions with the posterior mean (``"mean"``, deterministic) or, as the official code
    does, a posterior sample (``"sample"``, seeded by ``seed``); ``strength``: where a COP-GEN
    model's sampling starts, in (0, 1] (``None``: the model's; 1 is pure noise, the published
    sampler; below 1 the model's first guess noised to that time, as diffusers' img2img
    ``strength``); ``precision``: ``"auto"`` (what the official code runs on the device, where
    the hardware does it natively), ``"fp32"`` (the exact reference), ``"bf16"`` or ``"fp16"``
    (see :mod:`geocopgen.precision`); ``batch_size="auto"`` takes the largest batch the
    device's free memory holds."""

    steps: int | None = None
    samples: int = 1
    seed: int = 0
    overlap: int | None = None
    seamless: bool = True
    batch_size: int | Literal["auto"] = 8
    reduce: Reduce = "mean_std"
    progress: bool = True
    posterior: str = "mean"
    strength: float | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.strength is not None and not 0.0 < self.strength <= 1.0:
            raise ConfigError(f"strength must be in (0, 1], got {self.strength!r}")
        if self.posterior not in ("mean", "sample"):
            raise ConfigError(f"posterior must be 'mean' or 'sample', got {self.posterior!r}")
        if self.samples < 1:
            raise ConfigError(f"samples must be at least 1, got {self.samples}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, int) and self.batch_size >= 1
        ):
            raise ConfigError(f"batch_size must be 'auto' or at least 1, got {self.batch_size!r}")
        check_precision(self.precision)
        if self.reduce not in ("mean_std", "samples"):
            raise ConfigError(f"reduce must be 'mean_std' or 'samples', got {self.reduce!r}")


@dataclass(frozen=True)
class WriteOptions:
    """Where a result goes. ``path=None`` keeps it in memory (no file is written);
    ``grid``: ``"input"``, ``"model"``, ``"native"``, a grid value, or ``None`` for the model's
    default (the input grid; COP-GEN: each group's native grid); ``cog`` writes a Cloud
    Optimized GeoTIFF; ``overwrite`` allows replacing an existing file."""

    path: Path | None = None
    grid: Any = None
    cog: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(os.fspath(self.path)))
        if self.cog and self.path is None:
            raise ConfigError("cog=True needs an output path; an in-memory result has no file")

    def prepare(
        self, inputs: Iterable[str | os.PathLike] = (), files: Iterable[Path | None] | None = None
    ) -> list[Path]:
        """Before any work: refuse writing over an input, a folder, or an existing file without
        ``overwrite``, and a name that is not GeoTIFF; create the missing parent folders and
        return them, for removal if the run fails (:func:`geocopgen.outputs.prepare_output`).
        ``files``: the files a run writes for this path, when not the path itself (a COP-GEN
        model's per-group files). The one check of a translation's output: writers trust it."""
        from geocopgen.outputs import prepare_output

        inputs = list(inputs)
        created: list[Path] = []
        for path in [self.path] if files is None else files:
            if path is not None:
                created += prepare_output(
                    path, overwrite=self.overwrite, inputs=inputs, raster=True
                )
        return created


_VALUES = {"reading": ReadOptions, "sampling": TranslateOptions, "writing": WriteOptions}
_FIELDS = {
    name: {f.name for f in dataclasses.fields(cls)} - {"path"} for name, cls in _VALUES.items()
}


def split_options(
    options: Mapping[str, Any], *, writing: Mapping[str, Any] | None = None
) -> tuple[ReadOptions, TranslateOptions, WriteOptions]:
    """Sort flat API keywords into the three option values (each built, and validated, once).

    ``options`` may also hold ready values under ``reading``/``sampling``/``writing``; flat
    keywords then override their fields. ``writing`` gives the caller's own defaults for the
    write options (``generate`` writes on the model grid by default).
    """
    given = dict(options)
    base = {name: given.pop(name, None) for name in _VALUES}
    per_value: dict[str, dict[str, Any]] = {name: {} for name in _VALUES}
    for key, value in given.items():
        owner = next((name for name, fields in _FIELDS.items() if key in fields), None)
        if owner is None:
            valid = sorted(set().union(*_FIELDS.values()))
            raise ConfigError(f"unknown option {key!r}; the options are {', '.join(valid)}")
        per_value[owner][key] = value
    if writing:
        per_value["writing"] = {**writing, **per_value["writing"]}
    values = []
    for name, cls in _VALUES.items():
        start = base[name]
        if start is not None and not isinstance(start, cls):
            raise ConfigError(f"{name}= must be a {cls.__name__}, got {type(start).__name__}")
        values.append(
            dataclasses.replace(start, **per_value[name]) if start else cls(**per_value[name])
        )
    reading, sampling, write = values
    return reading, sampling, write
