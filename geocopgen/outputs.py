"""One policy for every output geocopgen writes (GeoTIFFs, latent stores, reports).

* An existing output is refused unless the caller asks to replace it (Python ``overwrite=True``,
  CLI ``--overwrite``), as rio and GDAL do: a repeated command or a typo must never destroy a
  result that took an hour to make.
* Missing parent folders are created, like ``mkdir -p``, so ``-o runs/2024/dem.tif`` works on a
  fresh checkout; the caller is told which folders were made (the CLI prints them on stderr).
* The check runs before any model work, so a refused output costs a second, not a translation.
* A raster output's name must say GeoTIFF (``.tif``/``.tiff``): GeoTIFF bytes under ``out.png``
  would mislead every tool that trusts the extension.
* A finished file is moved into place without replacing one that appeared meanwhile (another
  run to the same new name), unless ``overwrite``; a full disk is one line naming the output.
* Temporary files carry their writer's process id, so the next run to the same output removes
  those a killed run (``kill -9``) left, and leaves a live run's alone.
* A failed run removes the folders it created, and only those.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from geocopgen.errors import OutputError, OutputExistsError

log = logging.getLogger(__name__)

#: Extensions a GeoTIFF (or COG) output may have.
RASTER_SUFFIXES = (".tif", ".tiff")


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
    path: str | os.PathLike,
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike] = (),
    raster: bool = False,
) -> list[Path]:
    """:func:`check_output` (and, for a ``raster``, :func:`check_raster_name`), then
    :func:`make_parents`: what every writer does first."""
    out = check_output(path, overwrite=overwrite, inputs=inputs)
    if raster:
        check_raster_name(out)
    return make_parents(out)


def check_model_folder(path: str | os.PathLike, *, overwrite: bool, marker: str) -> Path:
    """A model folder's output (a conversion's): refused if it exists unless ``overwrite``, and
    even then anything but a model folder (one holding ``marker``), so a mistyped ``-o`` cannot
    replace an unrelated folder; a new one needs a writable folder above it, so a bad ``-o``
    fails before minutes of reading and converting. The folder is written whole and renamed into
    place by its writer, so nothing is created here."""
    out = Path(path)
    if not (out.exists() or out.is_symlink()):
        parent = out.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise OutputError(f"{out}: cannot be written there ({parent} is not a writable folder)")
        return out
    if not overwrite:
        raise OutputError(f"{out}: exists; pass --overwrite to replace it, or choose another")
    if not out.is_dir():
        raise OutputError(f"{out}: is a file, not a model folder; choose another output")
    if any(out.iterdir()) and not (out / marker).is_file():
        raise OutputError(
            f"{out}: is a folder without {marker}; --overwrite replaces only "
            "geocopgen model folders, so choose another output"
        )
    return out


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


def check_raster_name(path: str | os.PathLike) -> None:
    """Refuse a raster output whose extension names another format (``out.png``, ``out.nc``):
    geocopgen writes GeoTIFF, and a mislabelled file is worse than none."""
    suffix = Path(path).suffix
    if suffix and suffix.lower() not in RASTER_SUFFIXES:
        raise OutputError(
            f"{path}: geocopgen writes GeoTIFF (or COG with --cog), not {suffix}; name the output "
            "with .tif or .tiff, and convert it afterwards (gdal_translate) if you need another "
            "format."
        )


def remove_created(folders: Iterable[Path]) -> None:
    """Remove folders a failed run created (innermost first), each only if still empty."""
    for folder in reversed(list(folders)):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def removed_on_failure(folders: Iterable[Path]) -> Iterator[None]:
    """Run the body; if it fails (an error, Ctrl-C), remove the output ``folders`` this run
    created (:func:`remove_created`), so a failed call leaves nothing behind, as the CLI does."""
    try:
        yield
    except BaseException:
        remove_created(folders)
        raise


# --- temporary files and moving into place -------------------------------------------------
def temporary_name(path: Path, suffix: str) -> Path:
    """A new empty file beside ``path`` named ``.<name>.<host>-<pid>.<random><suffix>``: host
    and pid let the next run tell a dead writer's leftover (:func:`remove_stale`) from a live
    one's, also on a folder that several machines share."""
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{_owner()}.", suffix=suffix, dir=path.parent
        )
    except OSError as exc:
        raise OutputError(
            f"cannot write in {path.parent} ({exc.strerror}); choose a writable location."
        ) from None
    os.close(fd)
    return Path(name)


def remove_stale(path: Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers of this machine that no longer
    run (a ``kill -9``, a crash); another machine's are left alone, since their pids mean
    nothing here."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([A-Za-z0-9-]+)-(\d+)\.[^.]+\.tmp(\..+)?")
    removed = []
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        found = pattern.fullmatch(leftover.name)
        if found and found.group(1) == _host() and not _alive(int(found.group(2))):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed.append(leftover)
                log.info("removed %s, left by a run that no longer runs", leftover)
    return removed


def _host() -> str:
    """This machine's short name, as it can stand in a file name."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _owner() -> str:
    """``<host>-<pid>``: who writes a temporary file."""
    return f"{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (on this machine). A zombie (killed, not yet reaped by
    its parent: a killed dask worker whose nanny died with it, in a container without an init
    that reaps) no longer writes, so it counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): trust kill
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename a finished ``tmp`` to ``path``; without ``overwrite``, never over a file that
    appeared since the output was checked (two runs to one new name: the later one fails)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails if path exists
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError as exc:  # no hard links here (some network or FAT file systems)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():
            raise OutputExistsError(path) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


#: Free bytes below which a failed write is put down to a full disk: GDAL writes a tile (at most
#: a few MB) at a time, so a write that failed with less room than that ran out of it.
FULL_DISK_BYTES = 4 * 2**20


def disk_full(folder: str | os.PathLike) -> bool:
    """Whether the file system holding ``folder`` has (almost) no room left."""
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


def write_failure(
    path: str | os.PathLike, exc: BaseException | str, *, full: bool = False
) -> OutputError:
    """A failed write as one line naming the output; a full disk (``full``, or ENOSPC in the
    error) says so, since that is what the user can act on."""
    chain: list[BaseException] = [exc] if isinstance(exc, BaseException) else []
    while chain and len(chain) < 8 and (chain[-1].__cause__ or chain[-1].__context__):
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    full = full or any(getattr(e, "errno", None) == errno.ENOSPC for e in chain)
    if full:
        return OutputError(
            f"cannot write {path}: no space left on device; free some space or choose another "
            "location."
        )
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return OutputError(f"cannot write {path}: {first}")
