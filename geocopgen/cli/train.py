"""``geocopgen train autoencoder|backbone CONFIG --output DIR``: the two training stages.

Rerunning a command with the same config and output folder resumes a killed run exactly. Several
GPUs or nodes: start the same command under torchrun, e.g.::

    torchrun --nproc_per_node 4 --no-python geocopgen train backbone cfg.yaml --output run/

(``loop.batch_size`` is the global batch; it must divide by the process count.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import VERBOSITY, GeoCopGenGroup, echo
from geocopgen.cli.options import DeviceOpt, RunOutputOpt, announce, command
from geocopgen.errors import OutputError
from geocopgen.outputs import make_parents

train_app = typer.Typer(
    cls=GeoCopGenGroup,
    name="train",
    help="Train the autoencoders (stage 1) or the backbone (stage 2) from a YAML/TOML config.",
    no_args_is_help=True,
)

ConfigArg = Annotated[
    Path, typer.Argument(metavar="CONFIG", help="YAML or TOML config (every key is checked).")
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Continue from the folder's checkpoint, or start again from step 0.",
    ),
]


def _run_folder(path: Path) -> Path:
    """A run folder: refuse a file; create missing folders, saying so."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; --output names a run folder, e.g. runs/ae_s2l2a")
    announce(make_parents(path / "checkpoints"))
    return path


def _device(value: str) -> str | None:
    return None if value == "auto" else value


def _load(config: Path, progress: bool):
    from dataclasses import replace

    from geocopgen.training import load_config

    cfg = load_config(config)
    if not progress:  # --quiet silences the bar without touching the resumable config keys
        cfg = replace(cfg, loop=replace(cfg.loop, progress=False))
    return cfg


def _summary(stage: str, result) -> None:
    last = result.train.history[-1] if result.train.history else {}
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("step", "grad_norm"))
    echo(f"{stage}: step {result.train.step}; {losses or 'no new steps'}")
    for record in result.train.validation[-1:]:
        echo("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
    echo(f"exported {result.model_dir}")


@command(train_app, "autoencoder")
def autoencoder(
    config: ConfigArg, output: RunOutputOpt, resume: ResumeOpt = True, device: DeviceOpt = "auto"
) -> None:
    """Stage 1: one modality's autoencoder on crops of real rasters."""
    from geocopgen.training.autoencoder import train_autoencoder

    cfg = _load(config, VERBOSITY.progress)
    out = _run_folder(output)
    result = train_autoencoder(cfg, out, resume=resume, device=_device(device))
    _summary("autoencoder", result)


@command(train_app, "backbone")
def backbone(
    config: ConfigArg, output: RunOutputOpt, resume: ResumeOpt = True, device: DeviceOpt = "auto"
) -> None:
    """Stage 2: the backbone on a zarr latent store (exports a pipeline with the codecs)."""
    from geocopgen.training.backbone_stage import train_backbone

    cfg = _load(config, VERBOSITY.progress)
    out = _run_folder(output)
    result = train_backbone(cfg, out, resume=resume, device=_device(device))
    _summary("backbone", result)


def register(app: typer.Typer) -> None:
    """Add ``geocopgen train ...`` to the ``geocopgen`` app."""
    app.add_typer(train_app, name="train")
