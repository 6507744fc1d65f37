"""What every geocopgen command shares: error → exit-code mapping, verbosity, one-line warnings.

* a :class:`GeoCopGenError` becomes ``Error: <message>`` on stderr and exit code 1 (no traceback);
  an existing output names ``--overwrite``, the switch of this surface (Python's is
  ``overwrite=True``);
* usage errors (bad option values) are click's: exit code 2;
* a failed command removes the output folders it created (only those, and only if empty);
* Ctrl-C prints that nothing was written (writers clean up their temporary files) and exits 130;
  SIGTERM (what ``timeout``, ``kill`` and batch schedulers send) takes the same clean-up path and
  exits 143 (128 + 15), so a killed job leaves no temporary file behind.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from geocopgen.errors import GeoCopGenError, OutputExistsError
from geocopgen.modalities import get_modality
from geocopgen.outputs import remove_created

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Output folders this command created, removed again if it fails (process-wide, like
#: :data:`VERBOSITY`: one command runs at a time).
CREATED_FOLDERS: list[Path] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so it unwinds like Ctrl-C: every writer's
    ``with`` block aborts and deletes its temporary file."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


def handle_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` (only the main thread may set signal handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@dataclass
class Verbosity:
    """Process-wide CLI verbosity, set by the root callback (``--quiet`` / ``--verbose``)."""

    quiet: bool = False
    verbose: int = 0

    @property
    def progress(self) -> bool:
        return not self.quiet


VERBOSITY = Verbosity()


class GeoCopGenGroup(TyperGroup):
    """The root command group: maps geocopgen errors and Ctrl-C to clean exits."""

    def invoke(self, ctx: typer.Context) -> Any:
        CREATED_FOLDERS.clear()
        try:
            return self._invoke_mapped(ctx)
        except BaseException as exc:
            if not (isinstance(exc, click.exceptions.Exit) and exc.exit_code == 0):
                remove_created(CREATED_FOLDERS)
            raise
        finally:
            CREATED_FOLDERS.clear()

    def _invoke_mapped(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OutputExistsError as exc:
            typer.echo(f"Error: {exc.message_for('--overwrite')}", err=True)
            ctx.exit(EXIT_ERROR)
        except GeoCopGenError as exc:
            typer.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except Terminated:
            typer.echo("geocopgen: terminated (SIGTERM); no output was written.", err=True)
            ctx.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            typer.echo("geocopgen: interrupted; no output was written.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def remember_created(folders: list[Path]) -> None:
    """Note output folders this command created, so a failure removes them (and only them)."""
    CREATED_FOLDERS.extend(folders)


def configure(quiet: bool, verbose: int) -> None:
    """Set logging level and route warnings to one line each on stderr."""
    VERBOSITY.quiet, VERBOSITY.verbose = quiet, verbose
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    logging.basicConfig(format="geocopgen: %(message)s", level=level, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _PrintedOnce) for f in handler.filters):
            handler.addFilter(_PrintedOnce())
    logging.getLogger("geocopgen").setLevel(level)
    warnings.showwarning = _show_warning


class _PrintedOnce(logging.Filter):
    """Drop a record a library's own handler has already printed (huggingface_hub has one), so
    that the root handler does not print every line a second time."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.getLogger() and logger.propagate:
            if logger.handlers:
                return False
            logger = logger.parent
        return True


def _show_warning(message: Any, category: type, *_args: Any, **_kwargs: Any) -> None:
    if VERBOSITY.quiet and not issubclass(category, UserWarning):
        return
    typer.echo(f"geocopgen: warning: {message}", err=True)


def modality_option(value: str | None) -> str | None:
    """Validate ``--modality`` as a usage error (exit 2) instead of a runtime one."""
    if value is None:
        return None
    try:
        return get_modality(value).name
    except GeoCopGenError as exc:
        raise typer.BadParameter(str(exc)) from None


def target_option(value: str) -> str:
    """Validate ``--to``: a registry modality, or one only COP-GEN models make (``lulc``,
    ``cloud_mask``, a slot key); which of them the model can make is checked when it loads."""
    from geocopgen.copgen.layout import MODALITY_SLOTS, SLOT_NAMES

    if value.lower() in MODALITY_SLOTS or value in SLOT_NAMES:
        return value.lower() if value.lower() in MODALITY_SLOTS else value
    return str(modality_option(value))


def echo(message: str) -> None:
    """Print unless ``--quiet``."""
    if not VERBOSITY.quiet:
        typer.echo(message)


def note(message: str) -> None:
    """A ``geocopgen:`` line on stderr (what was done on the side), unless ``--quiet``."""
    if not VERBOSITY.quiet:
        typer.echo(f"geocopgen: {message}", err=True)
