"""``geocopgen encode ...``: imagery → zarr latent store, from a folder, Major TOM or STAC.

Each sub-command builds places (:mod:`geocopgen.latents.places`) and hands them to
:func:`geocopgen.latents.encode_places`, so a rerun of the same command resumes a killed run and
a run with new places appends to the store. The recipes in ``pipelines/`` call these commands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from geocopgen.cli._common import GeoCopGenGroup
from geocopgen.cli.options import (
    EncodeOverlapOpt,
    OverwriteOpt,
    StoreOutputOpt,
    bbox_option,
    command,
    existing_paths,
    latent_multiple,
    modality_pairs,
    store_ready,
)
from geocopgen.errors import ConfigError
from geocopgen.modalities import get_modality

encode_app = typer.Typer(
    cls=GeoCopGenGroup,
    name="encode",
    help="Encode imagery into a zarr latent store (resumable, appendable).",
    no_args_is_help=True,
)


def _autoencoders(values: list[str]) -> list[str]:
    """``--autoencoder MODALITY=DIR``: checked (form, modality, folder) before any search."""
    existing_paths(modality_pairs(values, "--autoencoder", "DIR"), "--autoencoder")
    return values


AutoencoderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--autoencoder", "-a", metavar="MODALITY=DIR", callback=_autoencoders,
        help="A saved ModalityAutoencoder folder; once per modality (4-modality models).",
    ),
]  # fmt: skip
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", metavar="DIR",
        help="A COP-GEN-layout model folder (or 'default'): its codecs write one latent array "
        "per slot, chips of 1920 m (instead of --autoencoder).",
    ),
]  # fmt: skip
StrideOpt = Annotated[
    float,
    typer.Option(
        "--stride", min=60, metavar="METRES",
        help="With --model: metres between chip origins, a multiple of 60 (1920: side by side).",
    ),
]  # fmt: skip
ModalityOpt = Annotated[
    list[str] | None,
    typer.Option("--modality", "-m", help="With --model: a modality to encode (repeat)."),
]
ChipOpt = Annotated[
    int,
    typer.Option(min=8, callback=latent_multiple, help="Chip size in pixels (multiple of 8)."),
]
BatchOpt = Annotated[
    int,
    typer.Option(min=1, help="Chips per encoding task: fewer, larger tasks spend less on reading."),
]
WorkersOpt = Annotated[int | None, typer.Option(min=1, help="Local threads (default: dask's).")]
MaxCloudOpt = Annotated[float | None, typer.Option(min=0, max=100, help="Max cloud cover, %.")]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(help="dask.distributed scheduler address; default: local threads."),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")]
StoreBBoxOpt = Annotated[str | None, bbox_option(" (west > east crosses 180°)")]


def load_autoencoders(specs: list[str]) -> dict:
    """``["s2l2a=path", ...]`` → ``{modality: ModalityAutoencoder}`` in eval mode."""
    from geocopgen.models.autoencoder import ModalityAutoencoder

    if not specs:
        raise ConfigError("give one --autoencoder MODALITY=PATH per modality to encode")
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ConfigError(f"--autoencoder {spec!r}: expected MODALITY=PATH")
        out[get_modality(name).name] = ModalityAutoencoder.from_pretrained(path).eval()
    return out


def _codec_choice(autoencoder: list[str] | None, model: str | None) -> list[str]:
    """Exactly one of --autoencoder and --model; the modalities --autoencoder names."""
    if bool(autoencoder) == bool(model):
        raise ConfigError(
            "give either --model DIR (a COP-GEN-layout model folder, or 'default') or one "
            "--autoencoder MODALITY=DIR per modality (a 4-modality model), not both or neither"
        )
    return [a.partition("=")[0] for a in autoencoder or []]


def _copgen_model(model: str):
    """``--model``: a COP-GEN-layout folder (refused in one line otherwise), and its path."""
    from geocopgen.copgen.model import CopgenModel, is_copgen_model
    from geocopgen.weights import resolve_model

    path = resolve_model(model)
    if not is_copgen_model(path) or not Path(path).is_dir():
        raise ConfigError(
            f"--model {model}: not a COP-GEN-layout model folder (pipeline.json kind 'copgen'); "
            "for a 4-modality model pass its autoencoders with --autoencoder MODALITY=DIR"
        )
    return CopgenModel.from_pretrained(path), Path(path)


@contextlib.contextmanager
def _client(scheduler: str | None) -> Iterator[Any]:
    """A ``dask.distributed`` client for ``--scheduler``, closed afterwards; else ``None``."""
    if not scheduler:
        yield None
        return
    from distributed import Client

    client = Client(scheduler)
    try:
        yield client
    finally:
        client.close()


def _encode_slots(places, out, model, stride, batch_size, workers, scheduler, progress):
    from geocopgen.latents.slots import encode_slot_places

    copgen, path = _copgen_model(model)
    with _client(scheduler) as client:
        report = encode_slot_places(
            places, out, copgen, path, stride_m=stride, batch_size=batch_size, client=client,
            num_workers=workers, progress=progress,
        )  # fmt: skip
    _report(out, report)


def _report(out, report) -> None:
    typer.echo(
        f"{out}: {report.planned} chips planned, {report.encoded} encoded, "
        f"{report.already_complete} already complete, {report.failed} failed"
    )
    if report.failed:
        for err in report.errors[:10]:
            typer.echo(f"  skipped: {err}", err=True)
        raise typer.Exit(3)


def _encode(
    places, out, autoencoders, chip_size, overlap, batch_size, workers, scheduler, progress
):
    from geocopgen.latents import encode_places

    codecs = load_autoencoders(autoencoders)
    with _client(scheduler) as client:
        report = encode_places(
            places, out, codecs, chip_size=chip_size, overlap=overlap, batch_size=batch_size,
            client=client, num_workers=workers, progress=progress,
        )  # fmt: skip
    _report(out, report)


@command(encode_app, "folder")
def encode_folder(
    root: Annotated[
        Path, typer.Argument(metavar="ROOT", help="<root>/<MODALITY>/<name>.tif, co-registered.")
    ],
    output: StoreOutputOpt,
    autoencoder: AutoencoderOpt = None,
    model: ModelOpt = None,
    modality: ModalityOpt = None,
    chip_size: ChipOpt = 256,
    stride: StrideOpt = 1920.0,
    overlap: EncodeOverlapOpt = 0,
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """A folder of co-registered rasters (one sub-folder per modality) → latent store."""
    mods = _codec_choice(autoencoder, model) or modality
    store_ready(output, overwrite)
    from geocopgen.latents.places import places_from_folder

    places = places_from_folder(root, mods or None)
    if model:
        _encode_slots(places, output, model, stride, batch_size, workers, scheduler, progress)
        return
    _encode(
        places, output, autoencoder, chip_size, overlap, batch_size, workers, scheduler, progress
    )


@command(encode_app, "majortom")
def encode_majortom(
    source: Annotated[
        list[str],
        typer.Option(
            metavar="MODALITY=LOCATION",
            help="A downloaded Major TOM folder or a metadata.parquet (path or URL); once per "
            "modality.",
        ),
    ],
    output: StoreOutputOpt,
    autoencoder: AutoencoderOpt = None,
    model: ModelOpt = None,
    stride: StrideOpt = 1920.0,
    cells: Annotated[
        list[str] | None, typer.Option(metavar="CELL", help="Cell id to keep (repeat).")
    ] = None,
    bbox: StoreBBoxOpt = None,
    start: Annotated[str | None, typer.Option(help="Earliest date.")] = None,
    end: Annotated[str | None, typer.Option(help="Latest date.")] = None,
    max_cloud: MaxCloudOpt = None,
    max_nodata: Annotated[
        float | None, typer.Option(min=0, max=1, help="Max nodata fraction.")
    ] = None,
    shards_dir: Annotated[Path | None, typer.Option(help="Local mirror of the shards.")] = None,
    chip_size: ChipOpt = 256,
    overlap: EncodeOverlapOpt = 0,
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Major TOM cells (by id, bbox, dates, cloud cover) → latent store."""
    _codec_choice(autoencoder, model)
    store_ready(output, overwrite)
    from geocopgen.latents.places import places_from_majortom
    from geocopgen.sources.majortom import MajorTOM

    sources = {}
    for spec in source:
        name, sep, location = spec.partition("=")
        if not sep:
            raise ConfigError(f"--source {spec!r}: expected MODALITY=LOCATION")
        if location.endswith(".parquet") or "://" in location:
            mt = MajorTOM.from_metadata(location, shards_dir=shards_dir)
        else:
            mt = MajorTOM.from_folder(location)
        sources[get_modality(name).name] = mt.filter(
            cells=cells or None,
            area=bbox,
            dates=(start, end) if (start or end) else None,
            cloud_cover=(0.0, max_cloud) if max_cloud is not None else None,
            nodata=(0.0, max_nodata) if max_nodata is not None else None,
        )
    places = list(places_from_majortom(sources))
    if model:
        _encode_slots(places, output, model, stride, batch_size, workers, scheduler, progress)
        return
    _encode(
        places, output, autoencoder, chip_size, overlap, batch_size, workers, scheduler, progress
    )


@command(encode_app, "stac")
def encode_stac(
    bbox: Annotated[str, bbox_option()],
    output: StoreOutputOpt,
    autoencoder: AutoencoderOpt = None,
    model: ModelOpt = None,
    modality: ModalityOpt = None,
    stride: StrideOpt = 1920.0,
    api: Annotated[str, typer.Option(help="STAC API URL or preset name.")] = "earth-search",
    preset: Annotated[str | None, typer.Option(help="Asset naming preset.")] = None,
    datetime: Annotated[str | None, typer.Option(help="e.g. 2023-06-01/2023-08-31")] = None,
    max_cloud: MaxCloudOpt = None,
    crs: Annotated[str | None, typer.Option(help="Output CRS (default: the items').")] = None,
    resolution: Annotated[float | None, typer.Option(help="Pixel size (default 10).")] = None,
    max_items: Annotated[int, typer.Option(help="Max items per search.")] = 20,
    chip_size: ChipOpt = 256,
    overlap: EncodeOverlapOpt = 0,
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """A STAC search (the first modality drives the time steps) → latent store."""
    mods = _codec_choice(autoencoder, model) or list(modality or [])
    if not mods:
        raise ConfigError("with --model, name the modalities to search: --modality s2l2a ...")
    store_ready(output, overwrite)
    from geocopgen.latents.places import places_from_stac
    from geocopgen.sources.stac import StacSource

    places = places_from_stac(
        StacSource(api, preset=preset),
        mods,
        bbox=bbox,
        datetime=datetime,
        cloud_cover=(0.0, max_cloud) if max_cloud is not None else None,
        crs=crs,
        resolution=resolution,
        max_items=max_items,
    )
    if model:
        _encode_slots(places, output, model, stride, batch_size, workers, scheduler, progress)
        return
    _encode(
        places, output, autoencoder, chip_size, overlap, batch_size, workers, scheduler, progress
    )


def register(app: typer.Typer) -> None:
    """Add ``geocopgen encode ...`` to the ``geocopgen`` app."""
    app.add_typer(encode_app, name="encode")
