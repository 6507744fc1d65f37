"""Raster-engine commands: ``geocopgen info`` and ``geocopgen roundtrip``."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from geocopgen.cli._common import VERBOSITY, echo, modality_option
from geocopgen.cli.options import (
    EngineOverlapOpt,
    OutputOpt,
    OverwriteOpt,
    command,
    output_ready,
)
from geocopgen.io import open_raster, plan_input
from geocopgen.modalities import S2_OFFSET_DN, get_modality
from geocopgen.raster.chips import DEFAULT_CHIP_SIZE, DEFAULT_OVERLAP
from geocopgen.raster.grid import at_resolution, grid_of
from geocopgen.raster.mosaic import apply_chipwise, identity

#: The offsets a Sentinel-2 product can carry: none, or baseline 04.00's +1000 DN.
S2_OFFSETS = (0, S2_OFFSET_DN)


class S1Scale(StrEnum):
    auto = "auto"
    db = "db"
    linear = "linear"


# Options shared by the commands (the same flag means the same thing everywhere).
Input = Annotated[
    str,  # not Path: pathlib would turn https://host/s2.tif into https:/host/s2.tif
    typer.Argument(
        metavar="FILE",
        help="A GeoTIFF, a folder with one file per band, or a URL (https://, /vsicurl/...).",
    ),
]
ModalityOpt = Annotated[
    str | None,
    typer.Option(
        "--modality", "-m", metavar="MODALITY", callback=modality_option,
        help="dem, s1rtc, s2l1c or s2l2a (detected when omitted).",
    ),
]  # fmt: skip


def _s2_offset(value: int | None) -> int | None:
    """``--s2-offset``: only the two offsets Sentinel-2 products have (a usage error, exit 2)."""
    if value is not None and value not in S2_OFFSETS:
        raise typer.BadParameter(f"{value} is not a Sentinel-2 DN offset; use 0 or -1000")
    return value


S2OffsetOpt = Annotated[
    int | None,
    typer.Option(
        "--s2-offset", metavar="[0|-1000]", callback=_s2_offset,
        help="Sentinel-2 DN offset: 0, or -1000 (baseline 04.00 on); decided if omitted.",
    ),
]  # fmt: skip
S1ScaleOpt = Annotated[
    S1Scale, typer.Option("--s1-scale", help="Sentinel-1 values: dB or linear power.")
]
NodataOpt = Annotated[
    float | None,
    typer.Option("--nodata", help="Override the input's nodata ('nan' declares NaN as nodata)."),
]


def info(
    path: Input,
    modality: ModalityOpt = None,
    s2_offset: S2OffsetOpt = None,
    s1_scale: S1ScaleOpt = S1Scale.auto,
    nodata: NodataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What FILE is detected as: modality, bands, CRS, grid, nodata, S2 offset."""
    plan = plan_input(path, modality, offset=s2_offset, s1_scale=s1_scale.value, nodata=nodata)
    facts = cli_facts(plan)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    print_facts(facts)


#: The reader's evidence names Python's keywords (``offset=``); the CLI names its own flags.
_CLI_WORDS = {"offset=": "--s2-offset", "s1_scale=": "--s1-scale", "lulc_scheme=": "--lulc-scheme"}


def cli_facts(plan: Any) -> dict[str, Any]:
    """``plan.to_dict()``, with every override its evidence suggests named as a CLI flag."""
    facts = plan.to_dict()
    for key, value in facts.items():
        if key.endswith("_evidence") and isinstance(value, str):
            for keyword, flag in _CLI_WORDS.items():
                value = value.replace(keyword, flag)
            facts[key] = value
    return facts


def print_facts(facts: dict[str, Any]) -> None:
    """``info``'s aligned ``key  value`` lines (every list but the transform as ``a, b``)."""
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list) and key != "transform":
            value = ", ".join(map(str, value))
        typer.echo(f"{key:<{width}}  {value}")


def roundtrip(
    path: Input,
    output: OutputOpt,
    modality: ModalityOpt = None,
    chip_size: Annotated[
        int, typer.Option("--chip-size", min=16, help="Chip size, px.")
    ] = DEFAULT_CHIP_SIZE,
    overlap: EngineOverlapOpt = DEFAULT_OVERLAP,
    native: Annotated[
        bool,
        typer.Option("--native", help="Write at the modality's native resolution (DEM: 30 m)."),
    ] = False,
    cog: Annotated[bool, typer.Option("--cog", help="Write a Cloud Optimized GeoTIFF.")] = False,
    s2_offset: S2OffsetOpt = None,
    s1_scale: S1ScaleOpt = S1Scale.auto,
    nodata: NodataOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Chip FILE, run the identity on every chip, and mosaic it back (physical units, float32).

    This exercises the whole raster engine; the output reproduces the decoded input exactly.
    """
    if overlap > chip_size // 2:
        raise typer.BadParameter(
            f"must be at most half the chip size ({chip_size // 2})", param_hint="--overlap"
        )
    array = open_raster(path, modality, offset=s2_offset, s1_scale=s1_scale.value, nodata=nodata)
    m = get_modality(array.attrs["modality"])
    grid = grid_of(array)
    out_grid = at_resolution(grid, m.native_resolution) if native else None
    output_ready(output, overwrite, [path])
    written = apply_chipwise(
        array,
        identity,
        output,
        chip_size=chip_size,
        overlap=overlap,
        out_grid=out_grid,
        cog=cog,
        progress=VERBOSITY.progress,
        overwrite=overwrite,
    )
    final = out_grid or grid
    echo(f"wrote {written} ({m.long_name}, {len(array.band)} bands, {final})")


def register(app: typer.Typer) -> None:
    """Add the raster-engine commands to the ``geocopgen`` app."""
    command(app)(info)
    command(app)(roundtrip)
