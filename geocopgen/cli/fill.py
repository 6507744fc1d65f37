"""``geocopgen fill``: Sentinel-2 filled under clouds and in nodata gaps, on its own grid and dtype.

The command parses its flags and calls :func:`geocopgen.api.fill`; what is filled and how is
:mod:`geocopgen.translation.fill`.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import echo
from geocopgen.cli.engine import Input, ModalityOpt, NodataOpt
from geocopgen.cli.groups import READING, SAMPLING, ModelOpt, option_groups
from geocopgen.cli.options import (
    DeviceOpt,
    OutputOpt,
    OverwriteOpt,
    command,
    modality_pairs,
    output_ready,
)
from geocopgen.options import ReadOptions, TranslateOptions


class Method(StrEnum):
    model = "model"
    interpolate = "interpolate"
    ridge = "ridge"


MaskOpt = Annotated[
    str,
    typer.Option(
        "--mask", metavar="MASK",
        help="What to fill: 'nodata' (the input's own, the default), 'scl' (its L2A scene "
        "classification: cloud shadow, cloud, cirrus), 'model' (the cloud mask a COP-GEN model "
        "makes from it) or a mask raster (non-zero = fill; any grid, reprojected).",
    ),
]  # fmt: skip


@option_groups(SAMPLING, READING)
def fill(
    path: Input,
    output: OutputOpt,
    mask: MaskOpt = "nodata",
    cond: Annotated[
        list[str] | None,
        typer.Option(
            "--cond",
            "-c",
            metavar="MODALITY=FILE",
            help="A condition for the whole scene, e.g. --cond s1rtc=s1.tif (repeat).",
        ),
    ] = None,
    dilate: Annotated[
        int, typer.Option("--dilate", min=0, help="Grow the mask by N pixels (hazy cloud edges).")
    ] = 0,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="model, or a baseline: GDAL's inverse-distance "
            "fill (interpolate) or a per-pixel ridge from --cond (ridge).",
        ),
    ] = Method.model,
    feather: Annotated[
        str,
        typer.Option(
            "--feather", metavar="N|all",
            help="How far into the mask the filled values are matched to their clear "
            "surroundings (the residual against the clear pixels, interpolated inward): all of "
            "it, N pixels (fading out), or 0 (not at all).",
        ),
    ] = "all",
    modality: ModalityOpt = None,
    nodata: NodataOpt = None,
    model: ModelOpt = "default",
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    *,
    sampling: TranslateOptions,
    reading: ReadOptions,
) -> None:
    """Fill FILE (Sentinel-2) where --mask says: clear pixels are kept bit for bit, masked ones
    generated from their surroundings and the --cond rasters. Writes OUTPUT, OUTPUT's
    <stem>_filled (0 kept, 1 filled) and, with --samples N, <stem>_std.

    Example: geocopgen fill s2.tif -o filled.tif --mask clouds.tif --dilate 3 --cond s1rtc=s1.tif
    """
    from geocopgen import api

    paths = modality_pairs(cond, "--cond")
    reach = _feather(feather)
    if method is not Method.interpolate or mask == "model":
        api.check_model(model, bundled="--model default")
    output_ready(output, overwrite, [path, *paths.values()])
    result = api.fill(
        path,
        cond=paths or None,
        mask=mask,
        dilate=dilate,
        method=method.value,
        feather=reach,
        modality=modality,
        output=output,
        model=model,
        device=device,
        overwrite=overwrite,
        reading=replace(reading, nodata=nodata),
        sampling=sampling,
    )
    fraction = float(result.attrs.get("filled_fraction", 0))
    echo(f"wrote {output} ({fraction:.1%} of the pixels filled, {method.value}); "
         f"{Path(output).stem}_filled{Path(output).suffix} says which")  # fmt: skip


def _feather(value: str) -> int | None:
    """``--feather all`` or a number of pixels (0 or more)."""
    if value == "all":
        return None
    if not value.isdigit():
        raise typer.BadParameter(f"give 'all' or a number of pixels, not {value!r}",
                                 param_hint="--feather")  # fmt: skip
    return int(value)


def register(app: typer.Typer) -> None:
    """Add ``geocopgen fill``."""
    command(app)(fill)
