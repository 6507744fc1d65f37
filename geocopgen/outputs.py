"""One policy for every output geocopgen writes (GeoTIFFs, latent stores, reports).

* An existing output is refused unless the caller asks to replace it (Python ``overwrite=True``,
  CLI ``--overwrite``), as rio and GDAL do: a repeated command or a typo must never destroy a
  result that took an hour to make.
* Missing parent folders are created, like ``mkdir -p``, so ``-o runs/2024/dem.tif`` works on a
  fresh checkout; the caller is told which folders were made (the CLI prints them on stderr).
* The check runs before any model work, so a refused output costs a second, not a translation.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from geocopgen.errors import OutputError, OutputExistsError

log = logging.getLogger(__name__)


def refuse_inputs(path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse writing over an input, whatever ``overwrite`` says: it is still being read."""
    for source in inputs:
        try:
            same = Path(source).exists() and Path(path).resolve() == Path(source).resolve()
        except OSError:
            same = False
        if same:
            raise OutputError(f"{path} is the input itself; write the output to another file.")


def check_output(
    path: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Refuse an input, a folder, or an existing file unless ``overwrite``; return the path."""
    refuse_inputs(path, inputs)
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name such as out.tif")
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    return out


def make_parents(path: str | os.PathLike) -> list[Path]:
    """Create the missing parent folders of ``path``; return the ones created (outermost first)."""
    parent = Path(path).parent  # as the caller spelled it, so messages name what they typed
    missing = [p for p in (parent, *parent.parents) if not p.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the output folder {Path(path).parent} ({exc.strerror}); choose a "
            "writable location."
        ) from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{Path(path).parent} is not writable; choose another output path.")
    for folder in missing:
        log.info("created the output folder %s", folder)
    return missing


def prepare_output(
    path: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()
) -> list[Path]:
    """:func:`check_output`, then :func:`make_parents`: what every writer does first."""
    return make_parents(check_output(path, overwrite=overwrite, inputs=inputs))


def prepare_store(path: str | os.PathLike, *, overwrite: bool) -> list[Path]:
    """A latent store's output: an existing store is resumed and appended to (or, with
    ``overwrite``, removed to start afresh); an empty folder is used; a file is replaced only
    with ``overwrite``; a folder holding anything else is refused, since zarr would wipe it."""
    out = Path(path)
    if (out / "zarr.json").is_file():
        if overwrite:
            shutil.rmtree(out)
            log.info("removed the latent store %s to start afresh", out)
    elif out.is_dir():
        if any(out.iterdir()):
            raise OutputError(
                f"{out} is a folder that is not a latent store; geocopgen will not write into "
                "it. Choose a new or empty folder."
            )
    elif out.exists():
        if not overwrite:
            raise OutputExistsError(out)
        out.unlink()
    return make_parents(out)
