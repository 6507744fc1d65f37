"""Flags several commands share, declared once and handed to each command as one value.

``translate`` and ``generate`` take the same sampling, reading and running flags. Written out in
both signatures they were two copies of the same dozen lines, each free to drift; here each group
lists its flags once, :func:`option_groups` adds them to a command's signature (typer reads the
signature) and builds the group's value, the same :mod:`geocopgen.options` values the Python API
takes, before the command runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

import typer

from geocopgen.cli._common import VERBOSITY
from geocopgen.cli.engine import S1Scale, S1ScaleOpt, S2OffsetOpt
from geocopgen.cli.options import (
    DeviceOpt,
    OverwriteOpt,
    PrecisionChoice,
    PrecisionOpt,
    TranslateOverlapOpt,
)
from geocopgen.options import ReadOptions, TranslateOptions


@dataclass(frozen=True)
class OptionGroup:
    """Flags (as signature parameters) and how their values become one value (``build``)."""

    name: str
    params: tuple[inspect.Parameter, ...]
    build: Callable[..., Any]


def _flag(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)  # fmt: skip


def option_groups(*groups: OptionGroup) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the flags of ``groups``; it receives each group's value as the keyword
    ``group.name`` instead of the separate flags."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn, eval_str=True)
        names = {g.name for g in groups}
        own = [p for p in signature.parameters.values() if p.name not in names]
        params = own + [p for g in groups for p in g.params]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            for g in groups:
                kwargs[g.name] = g.build(**{p.name: kwargs.pop(p.name) for p in g.params})
            return fn(**kwargs)

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return command

    return decorate


# --- sampling ---------------------------------------------------------------------------------
StepsOpt = Annotated[
    int | None, typer.Option("--steps", min=1, help="Sampler steps (default: the model's).")
]
SamplesOpt = Annotated[
    int,
    typer.Option(
        "--samples", min=1,
        help="Draw N samples; N > 1 writes the per-pixel mean and standard deviation bands.",
    ),
]  # fmt: skip
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed; the same seed gives the same output.")]
SeamlessOpt = Annotated[
    bool,
    typer.Option(
        "--seamless/--no-seamless",
        help="Blend chips at every denoising step (default); --no-seamless only to compare.",
    ),
]
StrengthOpt = Annotated[
    float | None,
    typer.Option(
        "--strength", min=0.0, max=1.0,
        help="COP-GEN-layout models: where sampling starts, in (0, 1]; 1 is pure noise (the "
        "published sampler), lower stays closer to the model's first guess (default: the "
        "model's).",
    ),
]  # fmt: skip
def _batch_size(value: str) -> int | str:
    """``--batch-size``: a positive count, or ``auto`` (a usage error, exit 2, otherwise)."""
    if value == "auto":
        return value
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise typer.BadParameter(f"{value!r}: give a number of chips (>= 1) or 'auto'")
    return count


BatchOpt = Annotated[
    str,
    typer.Option(
        "--batch-size", metavar="N|auto", callback=_batch_size,
        help="Chips per backbone call (memory vs speed); auto: the largest batch the device's "
        "free memory holds.",
    ),
]  # fmt: skip




class Posterior(StrEnum):
    mean = "mean"
    sample = "sample"


PosteriorOpt = Annotated[
    Posterior,
    typer.Option(
        "--posterior",
        help="How a COP-GEN model encodes conditions: the posterior mean (deterministic) or a "
        "posterior sample, as the official code does.",
    ),
]


def _sampling(posterior: Posterior, precision: PrecisionChoice, **flags: Any) -> TranslateOptions:
    return TranslateOptions(
        **flags, posterior=posterior.value, precision=precision.value, progress=VERBOSITY.progress
    )


SAMPLING = OptionGroup(
    "sampling",
    (
        _flag("steps", StepsOpt, None),
        _flag("samples", SamplesOpt, 1),
        _flag("seed", SeedOpt, 0),
        _flag("overlap", TranslateOverlapOpt, None),
        _flag("seamless", SeamlessOpt, True),
        _flag("strength", StrengthOpt, None),
        _flag("batch_size", BatchOpt, "8"),
        _flag("posterior", PosteriorOpt, Posterior.mean),
        _flag("precision", PrecisionOpt, PrecisionChoice.auto),
    ),
    _sampling,
)


# --- reading ----------------------------------------------------------------------------------
class S2Dn(StrEnum):
    model = "model"
    stored = "stored"
    reflectance = "reflectance"


def _date(value: str | None) -> str | None:
    """``--date``: an ISO date (a usage error, exit 2, otherwise)."""
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r}: write the date as YYYY-MM-DD") from None
    return value


DateOpt = Annotated[
    str | None,
    typer.Option(
        "--date", metavar="YYYY-MM-DD", callback=_date,
        help="Acquisition date, where the inputs carry none (COP-GEN models condition on it).",
    ),
]  # fmt: skip
S2DnOpt = Annotated[
    S2Dn,
    typer.Option(
        "--s2-dn",
        help="Sentinel-2 numbers given to a COP-GEN model: what the model was trained on "
        "(default), as the product stored them (the published COP-GEN) or reflectance x 10000.",
    ),
]


class LulcScheme(StrEnum):
    auto = "auto"
    esri = "esri"
    terramind = "terramind"


LulcSchemeOpt = Annotated[
    LulcScheme,
    typer.Option(
        "--lulc-scheme",
        help="Land cover as ESRI codes or TerraMind class indices (auto: from tags, path, "
        "values; refused when nothing tells).",
    ),
]


def _reading(
    s2_offset: int | None, s1_scale: S1Scale, date: str | None, s2_dn: S2Dn, lulc_scheme: Any
) -> ReadOptions:
    return ReadOptions(s2_offset=s2_offset, s1_scale=s1_scale.value, date=date,
                       s2_dn=s2_dn.value, lulc_scheme=lulc_scheme.value)  # fmt: skip


READING = OptionGroup(
    "reading",
    (
        _flag("s2_offset", S2OffsetOpt, None),
        _flag("s1_scale", S1ScaleOpt, S1Scale.auto),
        _flag("date", DateOpt, None),
        _flag("s2_dn", S2DnOpt, S2Dn.model),
        _flag("lulc_scheme", LulcSchemeOpt, LulcScheme.auto),
    ),
    _reading,
)


# --- running: which model, where, and how the output is written --------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", metavar="DIR",
        help="Model folder (a geocopgen pipeline or a converted COP-GEN model), or 'default' "
        "(the bundled model).",
    ),
]  # fmt: skip
NativeOpt = Annotated[
    bool,
    typer.Option("--native", help="Write at the target's native resolution (DEM: 30 m)."),
]
CogOpt = Annotated[bool, typer.Option("--cog", help="Write a Cloud Optimized GeoTIFF.")]


class Grid(StrEnum):
    input = "input"
    model = "model"
    native = "native"


GridOpt = Annotated[
    Grid | None,
    typer.Option(
        "--grid",
        help="Output grid: the input's, the 10 m working grid ('model') or each group's native "
        "one; default: the model's own (translate), 'model' (generate). --native = --grid native.",
    ),
]


@dataclass(frozen=True)
class Run:
    """The running flags of a translation: the model, the device and how to write."""

    model: str
    device: str
    native: bool
    grid: Grid | None
    cog: bool
    overwrite: bool

    def api_keywords(self, *, default_grid: str | None) -> dict[str, Any]:
        """The API keywords these flags mean (``default_grid`` when neither ``--grid`` nor
        ``--native`` is given)."""
        if self.native and self.grid not in (None, Grid.native):
            raise typer.BadParameter(
                f"--native and --grid {self.grid.value} disagree; give one of them",
                param_hint="--grid",
            )
        grid = "native" if self.native else self.grid.value if self.grid else default_grid
        return {"model": self.model, "device": self.device, "grid": grid, "cog": self.cog,
                "overwrite": self.overwrite}  # fmt: skip


RUNNING = OptionGroup(
    "run",
    (
        _flag("model", ModelOpt, "default"),
        _flag("device", DeviceOpt, "auto"),
        _flag("native", NativeOpt, False),
        _flag("grid", GridOpt, None),
        _flag("cog", CogOpt, False),
        _flag("overwrite", OverwriteOpt, False),
    ),
    Run,
)
