"""The ``geocopgen`` command line (typer).

Each area of the project adds its commands in its own module with a ``register(app)`` function
and one registration line below.
"""

from __future__ import annotations

import typer

from geocopgen.cli._common import GeoCopGenGroup, configure

app = typer.Typer(
    cls=GeoCopGenGroup,
    name="geocopgen",
    help="Generative modality translation for georeferenced Copernicus rasters.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and warnings."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-vv)."),
) -> None:
    """Generative modality translation for georeferenced Copernicus rasters."""
    configure(quiet, verbose)


# --- command registrations (one line per area) ----------------------------------------------
from geocopgen.cli import convert, data, engine, evaluate, train, translate  # noqa: E402

engine.register(app)
translate.register(app)  # after engine: its info also says what the model can do
data.register(app)
train.register(app)
evaluate.register(app)
convert.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
