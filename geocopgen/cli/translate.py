"""``geocopgen translate`` and ``geocopgen generate``, and what ``info`` says a model can do.

Each command parses its options and calls :mod:`geocopgen.api`; geocopgen errors become one
``Error:`` line and exit code 1 (``_common``), bad option values exit 2, Ctrl-C exits 130 and the
streaming writer leaves no partial output.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from geocopgen.cli import engine
from geocopgen.cli._common import echo, target_option
from geocopgen.cli.engine import Input, ModalityOpt, NodataOpt, S1Scale, S1ScaleOpt, S2OffsetOpt
from geocopgen.cli.groups import READING, RUNNING, SAMPLING, ModelOpt, Run, option_groups
from geocopgen.cli.options import BBoxOpt, OutputOpt, command, modality_pairs, output_ready
from geocopgen.errors import GeoCopGenError
from geocopgen.options import ReadOptions, TranslateOptions

#: How the CLI names the bundled model in a message.
BUNDLED = "--model default"


def _conditions(values: list[str] | None) -> dict[str, str]:
    """``--cond MODALITY=FILE`` (repeatable) → {modality: path or URL, as given}; bad forms are
    usage errors."""
    return dict(modality_pairs(values, "--cond"))


# Options shared by translate and generate (the same flag means the same thing in both).
ToOpt = Annotated[
    str,
    typer.Option(
        "--to", "-t", metavar="MODALITY", callback=target_option,
        help="Modality to make: dem, s1rtc, s2l1c or s2l2a; with a COP-GEN model also lulc "
        "and cloud_mask.",
    ),
]  # fmt: skip
CondOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cond", "-c", metavar="MODALITY=FILE",
        help="A condition raster, e.g. --cond s1rtc=s1.tif (repeat for several).",
    ),
]  # fmt: skip


def _summary(result: Any, output: Path) -> str:
    """``wrote FILE (bands; grid)`` for each file a translation wrote."""
    arrays = result.values() if isinstance(result, dict) else [result]
    lines = []
    for array in arrays:
        grid = f"{array.rio.width}x{array.rio.height} px in {array.rio.crs}"
        bands = ", ".join(str(b) for b in array["band"].values)
        lines.append(f"wrote {array.attrs.get('source', output)} ({bands}; {grid})")
    return "\n".join(lines)


@option_groups(SAMPLING, READING, RUNNING)
def translate(
    to: ToOpt,
    output: OutputOpt,
    path: Annotated[
        str | None,  # not Path, which would mangle a URL
        typer.Argument(
            metavar="FILE",
            help="Input GeoTIFF, band folder or URL; the output is on its grid. Optional if --cond "
            "gives the inputs. --modality and --nodata apply to it alone; --s2-offset and "
            "--s1-scale to every Sentinel-2 / Sentinel-1 input, --cond rasters included.",
        ),
    ] = None,
    cond: CondOpt = None,
    modality: ModalityOpt = None,
    nodata: NodataOpt = None,
    *,
    sampling: TranslateOptions,
    reading: ReadOptions,
    run: Run,
) -> None:
    """Translate FILE (and the --cond rasters) into another modality, seamlessly, on FILE's grid.

    Example: geocopgen translate s2.tif --to dem -o dem.tif --cond s1rtc=s1.tif --samples 8
    """
    from geocopgen import api

    paths = _conditions(cond)
    if path is None and not paths:
        raise typer.BadParameter("give an input FILE or at least one --cond", param_hint="FILE")
    api.check_model(run.model, bundled=BUNDLED)  # before output_ready creates folders
    output_ready(output, run.overwrite, [*paths.values(), *([path] if path else [])])
    result = api.translate(
        path,
        to,
        cond=paths or None,
        modality=modality,
        output=output,
        reading=replace(reading, nodata=nodata),
        sampling=sampling,
        **run.api_keywords(default_grid=None),
    )
    echo(_summary(result, output))


@option_groups(SAMPLING, READING, RUNNING)
def generate(
    to: ToOpt,
    output: OutputOpt,
    cell: Annotated[
        str | None, typer.Option("--cell", help="A Major TOM cell, e.g. 433U_1171R.")
    ] = None,
    bbox: BBoxOpt = None,
    like: Annotated[
        Path | None, typer.Option("--like", help="Use the grid of this raster.")
    ] = None,
    cond: CondOpt = None,
    *,
    sampling: TranslateOptions,
    reading: ReadOptions,
    run: Run,
) -> None:
    """Generate a modality on a Major TOM cell, a lon/lat box or a raster's grid: unconditionally,
    or from --cond rasters; the output is georeferenced (10 m, or --native).

    Example: geocopgen generate --to dem --cell 433U_1171R -o dem.tif
    """
    from geocopgen import api

    places = [v for v in (cell, bbox, like) if v is not None]
    if len(places) > 1:
        raise typer.BadParameter("give one of --cell, --bbox or --like", param_hint="--cell")
    paths = _conditions(cond)
    if not places and not paths:
        raise typer.BadParameter(
            "say where: --cell, --bbox or --like (or give --cond rasters)", param_hint="--cell"
        )
    api.check_model(run.model, bundled=BUNDLED)
    output_ready(output, run.overwrite, paths.values())
    result = api.generate(
        to,
        cell=cell,
        bbox=bbox,
        like=like,
        cond=paths or None,
        output=output,
        reading=reading,
        sampling=sampling,
        **run.api_keywords(default_grid="model"),
    )
    echo(_summary(result, output))


def info(
    path: Input,
    modality: ModalityOpt = None,
    s2_offset: S2OffsetOpt = None,
    s1_scale: S1ScaleOpt = S1Scale.auto,
    nodata: NodataOpt = None,
    model: ModelOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What FILE is detected as (modality, bands, CRS, grid, nodata, S2 offset), and what the
    model can make from it."""
    from geocopgen import api
    from geocopgen.io import plan_input

    plan = plan_input(path, modality, offset=s2_offset, s1_scale=s1_scale.value, nodata=nodata)
    facts = engine.cli_facts(plan)
    facts["valid_pixels"] = api.has_valid_pixels(plan.open().array)
    try:
        api.check_model(model, bundled=BUNDLED)
        can: dict[str, Any] = api.capabilities(plan.modality.name, model).to_dict()
    except GeoCopGenError as exc:  # a missing or unsuitable model is worth saying, not fatal
        can = {"model": model, "error": str(exc)}
    if not facts["valid_pixels"] and "error" not in can:
        can["can_translate_to"] = []  # a translation of it would be refused
    if as_json:
        typer.echo(json.dumps({**facts, "model": can}, indent=2))
        return
    engine.print_facts(facts)  # the plan is already read: do not detect FILE again
    if "error" in can:
        typer.echo(f"model: {can['error']}")
        return
    targets = ", ".join(can["can_translate_to"]) or "nothing"
    if not facts["valid_pixels"]:
        targets += " (every pixel is nodata or NaN: there is nothing to translate)"
    typer.echo(f"model: {can['model']} ({', '.join(can['model_modalities'])})")
    typer.echo(f"can translate it to: {targets}")
    if can["can_translate_to"]:
        first = can["can_translate_to"][0]
        typer.echo(f"e.g.: geocopgen translate {path} --to {first} -o {first}.tif")


def register(app: typer.Typer) -> None:
    """Add ``translate`` and ``generate``, and replace the engine's ``info`` by the one that
    also reports what the model can do (register after ``engine.register``)."""
    app.registered_commands[:] = [
        c for c in app.registered_commands if c.callback is not engine.info
    ]
    command(app)(info)
    command(app)(translate)
    command(app)(generate)
