"""The ``geocopgen`` command line (typer).

Each area of the project adds its commands in its own module with a ``register(app)`` function
and one registration line below.
"""

from __future__ import annotations

import typer

from geocopgen.cli._common import GeoCopGenGroup, configure, handle_sigterm

app = typer.Typer(
    cls=GeoCopGenGroup,
    name="geocopgen",
    help="Generative modality translation for georeferenced Copernicus rasters.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    """``--version``: print ``geocopgen <version>`` and stop, like rio and GDAL."""
    if value:
        from geocopgen._version import __version__

        typer.echo(f"geocopgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and warnings."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-vv)."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Generative modality translation for georeferenced Copernicus rasters."""
    configure(quiet, verbose)


# --- command registrations (one line per area) ----------------------------------------------
from geocopgen.cli import convert, data, engine, evaluate, fill, many, train, translate  # noqa: E402

engine.register(app)
translate.register(app)  # after engine: its info also says what the model can do
fill.register(app)
data.register(app)
train.register(app)
evaluate.register(app)
convert.register(app)
many.register(app)


def main() -> None:
    """Console-script entry point (SIGTERM cleans up like Ctrl-C, then exits 143)."""
    handle_sigterm()
    app()


__all__ = ["app", "main"]
