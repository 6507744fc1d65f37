"""``geocopgen translate-many``: many scenes on dask.distributed, resumable, with a STAC catalog.

A separate command, not ``translate`` with several inputs: ``translate FILE --cond ...`` takes
the inputs of one scene, so several positional files would be ambiguous (more scenes, or more
conditions?); its ``-o`` names one file, a batch writes a folder; and a batch needs what one
scene does not (a scheduler, resuming, a catalog, an exit code for a partial failure).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import VERBOSITY
from geocopgen.cli.groups import READING, RUNNING, SAMPLING, Run, option_groups
from geocopgen.cli.options import BBoxOpt, command, modality_pairs, output_ready
from geocopgen.cli.translate import BUNDLED, ToOpt
from geocopgen.options import ReadOptions, TranslateOptions

_CONDS = "--cond"


def _resources(values: list[str] | None) -> dict[str, float]:
    """``--resources GPU=1`` (repeatable) → {name: amount}; bad forms are usage errors."""
    out = {}
    for value in values or []:
        name, _, amount = value.partition("=")
        try:
            out[name] = float(amount)
        except ValueError:
            raise typer.BadParameter(f"{value!r}: write it as NAME=AMOUNT, e.g. GPU=1",
                                     param_hint="--resources") from None  # fmt: skip
    return out


@option_groups(SAMPLING, READING, RUNNING)
def translate_many(
    to: ToOpt,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="DIR",
                     help="Output folder: one GeoTIFF per scene and catalog.json (STAC). A rerun "
                     "skips outputs already complete. Missing folders are created."),
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="FILE", help="Scene rasters, paths or globs ('scenes/*.tif')."),
    ] = None,
    cond: Annotated[
        list[str] | None,
        typer.Option(_CONDS, "-c", metavar="MODALITY=RULE",
                     help="A condition per scene by rule: a template on the scene's name for "
                     "files (s1rtc={stem}_s1.tif; relative to the scene's folder; also {name}, "
                     "{parent}), a collection for STAC "
                     "(s1rtc=sentinel-1-rtc: the covering item nearest in time)."),
    ] = None,
    list_file: Annotated[
        Path | None, typer.Option("--list", help="A text file of scene paths, one a line.")
    ] = None,
    items: Annotated[
        Path | None, typer.Option("--items", help="A STAC ItemCollection file of scenes.")
    ] = None,
    stac: Annotated[str | None, typer.Option("--stac", metavar="URL",
                                             help="A STAC API to search for scenes.")] = None,
    collection: Annotated[str | None, typer.Option(
        "--collection", help="The scenes' STAC collection.")] = None,
    bbox: BBoxOpt = None,
    datetime: Annotated[str | None, typer.Option(
        "--datetime", metavar="A/B", help="STAC search time range, e.g. 2023-01-01/2023-12-31.")
    ] = None,
    majortom: Annotated[Path | None, typer.Option(
        "--majortom", metavar="ROOT",
        help="A local Major TOM folder (ROOT/<source>/<row>/<cell>/<product>/): one scene per "
        "product of --source; conditions name other sources (s1rtc=Core-S1RTC: the same "
        "cell's product nearest in time).")] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="The Major TOM source of the scenes, e.g. Core-S2L2A (default: the "
        "only one under --majortom).")] = None,
    cells: Annotated[list[str] | None, typer.Option(
        "--cells", metavar="CELL", help="Major TOM cells to translate, e.g. 433U_1171R "
        "(repeat; default: every cell of the source).")] = None,
    max_days: Annotated[float, typer.Option(
        "--max-days", help="STAC and Major TOM conditions: at most this many days from the "
        "scene.")] = 10.0,
    asset: Annotated[str | None, typer.Option(
        "--asset", help="The STAC asset to translate (default: the item's one data asset).")
    ] = None,
    name: Annotated[str, typer.Option(
        "--name", help="Output file name per scene: {id} (or {stem}) and {to}.")
    ] = "{id}.{to}.tif",
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", metavar="ADDRESS", help="A dask.distributed scheduler, e.g. tcp://host:8786."
    )] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Local worker processes when no --scheduler is given.")] = 1,
    retries: Annotated[int, typer.Option(
        "--retries", min=0, help="dask retries of a scene whose task raised.")] = 1,
    resources: Annotated[list[str] | None, typer.Option(
        "--resources", metavar="NAME=AMOUNT", help="dask resources per scene, e.g. GPU=1.")
    ] = None,
    *,
    sampling: TranslateOptions,
    reading: ReadOptions,
    run: Run,
) -> None:
    """Translate many scenes into another modality on dask.distributed, one task per scene;
    resumable, with a STAC catalog of the outputs. Exit code 1 if any scene failed.

    Example: geocopgen translate-many 's2/*.tif' --to dem -o out/ --cond
    's1rtc=../s1/{stem}.tif' --workers 4
    """
    from geocopgen import api, many

    # dask's connection chatter is not this command's progress; -vv shows it
    chatter = logging.INFO if VERBOSITY.verbose > 1 else logging.ERROR
    logging.getLogger("distributed").setLevel(chatter)
    api.check_model(run.model, bundled=BUNDLED)
    rules = modality_pairs(cond, _CONDS, "RULE")
    if majortom is not None:
        scenes: list = many.scenes_from_majortom(
            majortom, source, cells=cells, cond=rules, max_days=max_days
        )
        rules = {}
    elif stac or items:
        scenes = many.scenes_from_stac(
            url=stac, items=items, collection=collection, cond=rules, bbox=bbox,
            datetime=datetime, max_days=max_days, asset=asset,
        )  # fmt: skip
        scenes += list(inputs or [])
        rules = {}
    elif inputs or list_file:
        scenes = list(inputs or [])
    else:
        raise typer.BadParameter(
            "give scene FILEs, --list, --items, --stac or --majortom", param_hint="FILE"
        )
    keywords = run.api_keywords(default_grid=None)
    # the folder is made (and said) here, so that a run failing before any scene removes it
    output_ready(output / "catalog.json", True, raster=False)
    report = many.translate_many(
        scenes, to, output, cond=rules or None, name=name, list_file=list_file,
        scheduler=scheduler, workers=workers, retries=retries,
        resources=_resources(resources) or None, dashboard=VERBOSITY.verbose > 0,
        reading=reading, sampling=replace(sampling, progress=VERBOSITY.progress), **keywords,
    )  # fmt: skip
    typer.echo(report.summary(), err=True)
    if report.catalog is not None and not VERBOSITY.quiet:
        typer.echo(f"catalog: {report.catalog}", err=True)
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``translate-many``."""
    command(app, "translate-many")(translate_many)
