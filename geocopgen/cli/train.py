"""``geocopgen train autoencoder|backbone CONFIG --out DIR``: the two training stages.

Rerunning a command with the same config and output folder resumes a killed run exactly. Several
GPUs or nodes: start the same command under torchrun, e.g.::

    torchrun --nproc_per_node 4 --no-python geocopgen train backbone cfg.yaml --out run/

(``loop.batch_size`` is the global batch; it must divide by the process count.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import VERBOSITY, echo

train_app = typer.Typer(
    name="train",
    help="Train the autoencoders (stage 1) or the backbone (stage 2) from a YAML/TOML config.",
    no_args_is_help=True,
)

ConfigArg = Annotated[
    Path, typer.Argument(metavar="CONFIG", help="YAML or TOML config (every key is checked).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints + export.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume/--no-resume", help="Continue from the folder's checkpoint.")
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if any).")]


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


@train_app.command("autoencoder")
def autoencoder(
    config: ConfigArg, out: OutOpt, resume: ResumeOpt = True, device: DeviceOpt = None
) -> None:
    """Stage 1: one modality's autoencoder on crops of real rasters."""
    from geocopgen.training.autoencoder import train_autoencoder

    result = train_autoencoder(_load(config, VERBOSITY.progress), out, resume=resume, device=device)
    _summary("autoencoder", result)


@train_app.command("backbone")
def backbone(
    config: ConfigArg, out: OutOpt, resume: ResumeOpt = True, device: DeviceOpt = None
) -> None:
    """Stage 2: the backbone on a zarr latent store (exports a pipeline with the codecs)."""
    from geocopgen.training.backbone import train_backbone

    result = train_backbone(_load(config, VERBOSITY.progress), out, resume=resume, device=device)
    _summary("backbone", result)


def register(app: typer.Typer) -> None:
    """Add ``geocopgen train ...`` to the ``geocopgen`` app."""
    app.add_typer(train_app, name="train")
