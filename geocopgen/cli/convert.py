"""``geocopgen convert copgen``: the published COP-GEN files → a geocopgen model folder.

From downloaded files (``BACKBONE.pth VAE_FOLDER``) or straight from the Hugging Face hub
(``--hub``). The folder loads offline with ``--model FOLDER`` / ``load_model(FOLDER)``; see
:mod:`geocopgen.copgen.convert` for the file-to-slot rule and the refusals.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geocopgen.cli._common import GeoCopGenGroup, echo
from geocopgen.cli.options import OverwriteOpt, command

convert_app = typer.Typer(
    cls=GeoCopGenGroup,
    name="convert",
    help="Convert published model files into geocopgen model folders.",
    no_args_is_help=True,
)


class Size(StrEnum):
    """The published COP-GEN backbone sizes."""

    base = "base"
    large = "large"
    huge = "huge"


BackboneArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="BACKBONE.pth", help="The backbone, e.g. 500000_nnet_ema.pth (not with --hub)."
    ),
]
VaeArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="VAE_FOLDER",
        help="Folder of VAE .pth files: the hub's <NAME>/model-50-ema.pth, or <slot>.pth.",
    ),
]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", metavar="FOLDER", help="Model folder to write.")
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", metavar="FILE", help="JSON with the backbone's embed_dim, depth, num_heads."
    ),
]
SizeOpt = Annotated[
    Size | None,
    typer.Option("--size", help="Backbone size (default: read off the checkpoint)."),
]
HubOpt = Annotated[
    bool, typer.Option("--hub", help="Download from mespinosami/copgen-base and copgen-vaes.")
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV", help="Hub revision of copgen-base (with --hub)."),
]
VaeRevisionOpt = Annotated[
    str | None,
    typer.Option("--vae-revision", metavar="REV", help="Hub revision of copgen-vaes (with --hub)."),
]


@command(convert_app, "copgen")
def copgen(
    backbone: BackboneArg = None,
    vae_folder: VaeArg = None,
    output: OutputOpt = ...,
    config: ConfigOpt = None,
    size: SizeOpt = None,
    hub: HubOpt = False,
    revision: RevisionOpt = None,
    vae_revision: VaeRevisionOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert the published COP-GEN backbone and VAEs into a geocopgen model folder."""
    _check_usage(backbone, vae_folder, config, size, hub, revision or vae_revision)
    from geocopgen.copgen.convert import convert_copgen, convert_copgen_from_hub

    common = {
        "config": config,
        "size": size.value if size else None,
        "overwrite": overwrite,
        "progress": echo,
    }
    if hub:
        model = convert_copgen_from_hub(
            output, revision=revision, vae_revision=vae_revision, **common
        )
    else:
        model = convert_copgen(backbone, vae_folder, output, **common)
    images = sum(s.kind == "image" for s in model.slots)
    echo(
        f"wrote {output}: COP-GEN {model.size or 'custom-size'} backbone, VAEs for "
        f"{len(model.encodable)} of {images} image slots ({', '.join(model.encodable) or 'none'})"
    )


def _check_usage(backbone, vae_folder, config, size, hub: bool, revision) -> None:
    """Inputs that cannot go together are usage errors (exit 2), found before any work."""
    if hub and (backbone or vae_folder):
        raise typer.BadParameter("give BACKBONE.pth and VAE_FOLDER, or --hub, not both")
    if not hub and not (backbone and vae_folder):
        raise typer.BadParameter("give BACKBONE.pth and VAE_FOLDER (or --hub to download them)")
    if revision and not hub:
        raise typer.BadParameter("--revision and --vae-revision go with --hub")
    if config and size:
        raise typer.BadParameter("give --config or --size, not both")


def register(app: typer.Typer) -> None:
    """Add ``geocopgen convert ...`` to the ``geocopgen`` app."""
    app.add_typer(convert_app, name="convert")
