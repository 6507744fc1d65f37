"""``geocopgen evaluate MODEL DATA``: translation metrics in physical units, beside baselines.

``DATA`` is a folder of co-registered rasters, ``<DATA>/<MODALITY>/<place>.tif`` (the TerraMind
layout). Places named with ``--test-place`` are evaluated and the others fit the baselines; with
no ``--test-place`` every place is evaluated, and the baselines are fitted on ``--train-data``
or, failing that, in-sample (the report says so).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import VERBOSITY, echo
from geocopgen.cli.options import (
    OverwriteOpt,
    PrecisionChoice,
    PrecisionOpt,
    command,
    output_ready,
)
from geocopgen.errors import ConfigError, OffsetWarning


def evaluate(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Pipeline folder, or 'default' (bundled).")
    ],
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="<DATA>/<MODALITY>/<place>.tif, co-registered.")
    ],
    test_place: Annotated[
        list[str] | None,
        typer.Option("--test-place", "-t", metavar="PLACE", help="Place to evaluate (repeat)."),
    ] = None,
    train_data: Annotated[
        Path | None, typer.Option(help="Folder of training places for the baselines.")
    ] = None,
    direction: Annotated[
        list[str] | None,
        typer.Option(
            "--direction",
            "-d",
            metavar="COND[+COND]->TARGET",
            help="A direction to score (repeat); default: all.",
        ),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples per place (spread, best-of-N).")] = 4,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampler steps (model default).")] = None,
    seed: Annotated[int, typer.Option(help="Base seed of the samples.")] = 0,
    precision: PrecisionOpt = PrecisionChoice.auto,
    features: Annotated[
        list[str] | None,
        typer.Option(
            metavar="MODALITY=FILE",
            help="A local feature extractor, for FID/precision/recall (repeat).",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Write the JSON report there.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Translate held-out places and score them (paired, distribution, spread) beside the
    training-mean and linear-regression baselines."""
    from geocopgen.api import load_model
    from geocopgen.evaluation.features import load_feature_extractor
    from geocopgen.evaluation.report import evaluate as run_evaluation
    from geocopgen.latents.places import places_from_folder
    from geocopgen.modalities import get_modality
    from geocopgen.weights import resolve_model

    if json_out is not None:
        output_ready(json_out, overwrite, raster=False)
    path = resolve_model(model)
    pipeline = load_model(path, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)
        places = places_from_folder(data, _folder_modalities(data, pipeline.modalities))
        train = []
        if train_data:
            train = places_from_folder(
                train_data, _folder_modalities(train_data, pipeline.modalities)
            )
    names = {p.name for p in places}
    unknown = sorted(set(test_place or []) - names)
    if unknown:
        raise ConfigError(
            f"{data}: no place {', '.join(unknown)}; it has {', '.join(sorted(names))}"
        )
    test = [p for p in places if not test_place or p.name in test_place]
    if test_place:
        train = train + [p for p in places if p.name not in test_place]
    extractors = {}
    for spec in features or []:
        name, sep, file = spec.partition("=")
        if not sep:
            raise ConfigError(f"--features {spec!r}: expected MODALITY=PATH")
        extractors[get_modality(name).name] = load_feature_extractor(file)
    report = run_evaluation(
        pipeline,
        test,
        train,
        directions=direction,
        num_samples=samples,
        num_inference_steps=steps,
        seed=seed,
        features=extractors,
        model_name=str(path),
        progress=VERBOSITY.progress,
        precision=precision.value,
    )
    typer.echo(report.table())
    if json_out is not None:
        echo(f"wrote {report.write_json(json_out)}")


def _folder_modalities(root: Path, wanted: tuple[str, ...]) -> list[str]:
    """The model's modalities that have a folder under ``root``."""
    from geocopgen.errors import UnknownModalityError
    from geocopgen.modalities import get_modality

    have = set()
    for sub in root.iterdir() if root.is_dir() else []:
        try:
            have.add(get_modality(sub.name).name)
        except UnknownModalityError:
            continue
    found = [m for m in wanted if m in have]
    if not found:
        raise ConfigError(
            f"{root}: no folder for any of the model's modalities ({', '.join(wanted)}); expected "
            "<DATA>/<MODALITY>/<place>.tif"
        )
    return found


def register(app: typer.Typer) -> None:
    """Add ``geocopgen evaluate`` to the ``geocopgen`` app."""
    command(app, "evaluate")(evaluate)
