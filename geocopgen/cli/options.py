"""The conventions every geocopgen command follows, defined once so the help reads like one tool's.

* ``-o/--output`` names what a command writes (a GeoTIFF, a latent store, a run folder, a
  report); an existing output is refused unless ``--overwrite`` is given (rio's and GDAL's habit);
  missing parent folders are created and named on stderr.
* ``--bbox W,S,E,N``: one comma-separated value, longitude/latitude degrees.
* ``--device auto|cpu|cuda[:N]|mps``: checked as a usage error (exit 2) in every command;
  ``--precision auto|fp32|bf16|fp16`` says what the model computes in there.
* ``--overlap`` (pixels): each command kind has its own default, for its own reason, stated in
  its help: a translation 64 px (the denoiser predicts a chip's outer latent cells worst, so
  chips share 8 latent cells), the raster engine's round trip 32 px (only resampling has to be
  hidden), encoding 0 px (training chips should not repeat pixels).
* Metavars say what a value is (``FILE``, ``DIR``, ``MODALITY=FILE``, ``INTEGER``, ``[a|b]``),
  never a Python type; positional arguments show bare (``FILE``), optional ones in brackets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from geocopgen.cli._common import note, remember_created
from geocopgen.errors import GeoCopGenError
from geocopgen.modalities import get_modality

# --- help formatting ----------------------------------------------------------------------------
_TYPE_WORDS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH", bool: "BOOLEAN"}


def _metavar(option: TyperOption) -> str:
    """click's word for an option's value type (``INTEGER``, ``PATH``, ``[a|b]``)."""
    desc = option.type_descriptor
    if desc.is_choice and desc.choices is not None:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices) + "]"
    annotation = desc.annotation
    args = getattr(annotation, "__args__", ())
    if args:  # list[X] (repeatable) or tuple[X, ...]
        annotation = args[0]
    return _TYPE_WORDS.get(annotation, "VALUE")


class Command(TyperCommand):
    """A geocopgen command: metavars in words, arguments without braces or types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
                param.metavar = _metavar(param)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or str(param.name).upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                arguments.append((param.metavar or str(param.name).upper(), param.help or ""))
            else:
                record = param.get_help_record(ctx)
                if record is not None:
                    options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def command(app: typer.Typer, name: str | None = None) -> Any:
    """``app.command`` with geocopgen's help conventions."""
    return app.command(name, cls=Command)


# --- what a command writes ------------------------------------------------------------------------
_CREATED = "Missing folders are created; an existing file needs --overwrite."


def _output(metavar: str, help: str) -> Any:
    return typer.Option("--output", "-o", metavar=metavar, help=help)


OutputOpt = Annotated[Path, _output("FILE", f"Output GeoTIFF. {_CREATED}")]
StoreOutputOpt = Annotated[
    Path,
    _output(
        "STORE",
        "Latent store (zarr) to write. An existing store is resumed and appended to; "
        "--overwrite starts it afresh. Missing folders are created.",
    ),
]
RunOutputOpt = Annotated[
    Path,
    _output(
        "DIR",
        "Run folder: checkpoints and the exported model. Rerunning with the same folder "
        "resumes (see --resume). Missing folders are created.",
    ),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]


def output_ready(
    path: Path, overwrite: bool, inputs: Iterable[Any] = (), *, raster: bool = True
) -> Path:
    """Check an output before any work (an input, an existing file without --overwrite, a
    raster name that is not .tif: exit 1) and create its missing folders, saying which on
    stderr; a failed run removes them again (``_common.GeoCopGenGroup``)."""
    from geocopgen.outputs import prepare_output

    inputs = [str(i) for i in inputs]
    created = prepare_output(path, overwrite=overwrite, inputs=inputs, raster=raster)
    remember_created(created)
    announce(created)
    return path


def store_ready(path: Path, overwrite: bool) -> Path:
    """A latent store's :func:`output_ready`: an existing store is resumed instead."""
    from geocopgen.outputs import prepare_store

    announce(prepare_store(path, overwrite=overwrite))
    return path


def announce(created: Iterable[Path]) -> None:
    """Say on stderr which output folders were created."""
    for folder in created:
        note(f"created the folder {folder}")


# --- places, devices ------------------------------------------------------------------------------
def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """``W,S,E,N`` in degrees → a tuple; any other form is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 4:
        raise typer.BadParameter(
            f"{value!r}: write it as W,S,E,N in degrees, e.g. 11.2,45.1,11.6,45.4"
        )
    from geocopgen.api import bbox_problem

    problem = bbox_problem(numbers)
    if problem:
        raise typer.BadParameter(f"{value}: {problem}")
    return numbers  # type: ignore[return-value]


def bbox_option(note: str = "") -> Any:
    """``--bbox W,S,E,N`` (``note`` adds what this command makes of it)."""
    help = f"A lon/lat box in degrees: west,south,east,north{note}."
    return typer.Option("--bbox", metavar="W,S,E,N", callback=parse_bbox, help=help)


BBoxOpt = Annotated[str | None, bbox_option()]

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(value: str) -> str:
    """``--device``: auto, cpu, mps, cuda or cuda:N (a usage error otherwise)."""
    if not _DEVICE.fullmatch(value):
        raise typer.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device", metavar="auto|cpu|cuda[:N]|mps", callback=check_device,
        help="Where the model runs; auto picks CUDA, then MPS, then the CPU.",
    ),
]  # fmt: skip


class PrecisionChoice(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


PrecisionOpt = Annotated[
    PrecisionChoice,
    typer.Option(
        "--precision",
        help="What the backbone computes in: auto (as the official code does on this device, "
        "where the hardware does it natively: float16 on CUDA, bfloat16 on a CPU with native "
        "bfloat16, else float32), fp32 (the exact reference), bf16 or fp16.",
    ),
]


# --- chips ----------------------------------------------------------------------------------------
def latent_multiple(value: int | None) -> int | None:
    """Pixels that must cover whole latent cells (8 px): a usage error (exit 2) otherwise."""
    if value is not None and value % 8:
        raise typer.BadParameter(f"{value} is not a multiple of 8 px (one latent cell)")
    return value


def _overlap(why: str, **checks: Any) -> Any:
    return typer.Option("--overlap", min=0, help=f"Chip overlap in px{why}.", **checks)


TranslateOverlapOpt = Annotated[
    int | None,
    _overlap(
        ", a multiple of 8 (default 64: the denoiser predicts a chip's outer latent cells "
        "worst, so neighbours share 8 of them)",
        callback=latent_multiple,
    ),
]
EngineOverlapOpt = Annotated[
    int,
    _overlap(
        ", at most half a chip; small, because blending only has to hide resampling, not a "
        "model's edge effects"
    ),
]
EncodeOverlapOpt = Annotated[
    int, _overlap("; none by default: training chips should not repeat pixels")
]


# --- MODALITY=VALUE pairs ------------------------------------------------------------------------
def modality_pairs(values: list[str] | None, flag: str, what: str = "FILE") -> dict[str, str]:
    """``MODALITY=VALUE`` (repeatable) → {canonical modality: value}; bad forms are usage
    errors (exit 2)."""
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise typer.BadParameter(f"{value!r}: write it as MODALITY={what}", param_hint=flag)
        try:
            out[get_modality(name).name] = rest
        except GeoCopGenError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
    return out


def existing_paths(pairs: dict[str, str], flag: str) -> dict[str, str]:
    """Refuse local paths that do not exist before anything slow (a network search) runs."""
    for name, path in pairs.items():
        if "://" not in path and not Path(path).exists():
            raise typer.BadParameter(f"{name}={path}: no such file or folder", param_hint=flag)
    return pairs


__all__ = [
    "BBoxOpt",
    "Command",
    "DeviceOpt",
    "EncodeOverlapOpt",
    "EngineOverlapOpt",
    "OutputOpt",
    "OverwriteOpt",
    "RunOutputOpt",
    "StoreOutputOpt",
    "TranslateOverlapOpt",
    "announce",
    "bbox_option",
    "command",
    "existing_paths",
    "latent_multiple",
    "modality_pairs",
    "output_ready",
    "parse_bbox",
    "store_ready",
]
