"""Many scenes on dask.distributed: one task per scene, resumable, each output tagged complete.

Each task calls the public :func:`geocopgen.api.translate`, so a many-scene run translates every
scene exactly as ``geocopgen translate`` would (same seed, same bits). Scheduling, retries,
resources, the dashboard and the rescheduling of a dead worker's tasks are dask's; this module
only decides what each task writes and when an output counts as complete:

* a task translates into a temporary file beside the output, writes the completion tag
  (:data:`COMPLETE_TAG`, the run's key: inputs, model weights, sampling and writing settings)
  into it, and only then renames it into place (:func:`geocopgen.outputs.move_into_place`);
* a rerun skips an output whose tag equals its key, redoes one without the tag (a partial or
  foreign file), and leaves one made with other settings unless ``overwrite``;
* leftovers of a killed task (its temporary files) are removed by the next attempt.

The model loads once per worker process: :class:`ModelPreload` loads it when the worker starts,
and :func:`geocopgen.api.load_model` caches it per (folder, device) for every later task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from distributed import WorkerPlugin

from geocopgen.errors import ConfigError, GeoCopGenError, OutputError
from geocopgen.many.scenes import Scene
from geocopgen.options import ReadOptions, TranslateOptions, WriteOptions
from geocopgen.outputs import make_parents, move_into_place, remove_stale, temporary_name
from geocopgen.raster.mosaic import cog_copy

log = logging.getLogger(__name__)

#: GeoTIFF tag that marks an output complete; its value is the run key it was made for.
COMPLETE_TAG = "GEOCOPGEN_COMPLETE"


@dataclass(frozen=True)
class Job:
    """What one task needs: the scene, where it goes, and the run's settings (plain values)."""

    scene: Scene
    output: Path
    to: str
    key: str
    model: str
    device: str | None
    reading: ReadOptions
    sampling: TranslateOptions
    writing: WriteOptions
    replace: bool = False


@dataclass
class SceneResult:
    """How one scene ended: ``done``, ``skipped`` (already complete) or ``failed`` (``reason``,
    one line)."""

    id: str
    status: str
    output: str
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""


@dataclass
class ManyReport:
    """What a run did, per scene, plus what the catalog records of the run."""

    results: list[SceneResult]
    catalog: Path | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        """``N done, N skipped, N failed`` then one line per failed scene."""
        head = ", ".join(f"{self.count(s)} {s}" for s in ("done", "skipped", "failed"))
        return "\n".join([head] + [f"  failed {r.id}: {r.reason}" for r in self.failed])


# --- keys, tags and hashes ----------------------------------------------------------------------
def weights_sha256(model: str | os.PathLike) -> str:
    """sha256 over a model folder's files (relative names and bytes, in sorted order), so any
    change to weights or configs changes it; a file is hashed directly."""
    from geocopgen.weights import resolve_model

    path = Path(resolve_model(model))
    if not path.exists():
        raise ConfigError(f"{model}: translate_many needs a local model folder or 'default'")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_key(scene: Scene, to: str, weights: str, reading: ReadOptions,
            sampling: TranslateOptions, writing: WriteOptions) -> str:  # fmt: skip
    """The key an output is complete for: its inputs, target, weights and every setting that
    changes its values or grid (progress bars excluded)."""
    settings = {
        "to": to,
        "inputs": [scene.source, sorted(scene.cond.items())],
        "weights": weights,
        "reading": dataclasses.asdict(reading),
        "sampling": {**dataclasses.asdict(sampling), "progress": None},
        "writing": {"grid": str(writing.grid), "cog": writing.cog},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def completion(path: Path) -> str | None:
    """The completion tag of the output at ``path``; ``None`` when there is none, or the file
    does not open (a truncated or foreign file)."""
    try:
        with rasterio.open(path) as src:
            return src.tags().get(COMPLETE_TAG)
    except (rasterio.errors.RasterioError, OSError):
        return None


# --- the task -----------------------------------------------------------------------------------
def translate_scene(job: Job) -> SceneResult:
    """One scene into its output (runs on a worker). A geocopgen error (a bad input) is the
    scene's failure and is returned, not raised, since retrying cannot mend it; anything else
    (a lost file system, memory) is raised for dask to retry."""
    from geocopgen import api

    start = time.perf_counter()
    worker = _worker_name()
    remove_leftovers(job.output)
    tmp = temporary_name(job.output, ".tmp.tif")
    try:
        api.translate(
            job.scene.source,
            job.to,
            cond=dict(job.scene.cond) or None,
            output=tmp,
            model=job.model,
            device=job.device,
            reading=job.reading,
            sampling=dataclasses.replace(job.sampling, progress=False),
            writing=dataclasses.replace(job.writing, path=tmp, overwrite=True, cog=False),
        )
        _tag_complete(tmp, job)
        move_into_place(tmp, job.output, overwrite=job.replace)
    except GeoCopGenError as exc:
        return SceneResult(job.scene.id, "failed", str(job.output), _one_line(exc),
                           time.perf_counter() - start, worker)  # fmt: skip
    finally:
        for path in (tmp, *tmp.parent.glob(f".{tmp.name}.*")):
            path.unlink(missing_ok=True)
    return SceneResult(job.scene.id, "done", str(job.output), "",
                       time.perf_counter() - start, worker)  # fmt: skip


def remove_leftovers(output: Path) -> None:
    """Remove the temporary files that killed writers of ``output`` left on this machine: a
    task's own, and those of the GeoTIFF writer inside it. Run before each attempt, and for a
    skipped output too (a run killed between renaming and cleaning up leaves one beside it)."""
    for leftover in remove_stale(output):
        remove_stale(leftover)


def _tag_complete(tmp: Path, job: Job) -> None:
    """Write the completion tag into the finished temporary file (a tiled GeoTIFF, so updating
    a tag rewrites no pixel); ``cog`` converts it afterwards, carrying the tag."""
    with rasterio.open(tmp, "r+") as dst:
        dst.update_tags(**{COMPLETE_TAG: job.key})
    if job.writing.cog:
        _to_cog(tmp)


def _to_cog(path: Path) -> None:
    """Rewrite ``path`` as a Cloud Optimized GeoTIFF in place (same compression; ``mode``
    overviews for a categorical output, which carries a colour table)."""
    cog = path.with_name(path.name + ".cog.tif")
    with rasterio.open(path) as src:
        compress = (src.compression.value if src.compression else "deflate").lower()
        try:
            categorical = src.colormap(1) is not None
        except ValueError:
            categorical = False
    cog_copy(path, cog, compress=compress, categorical=categorical)
    os.replace(cog, path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


class ModelPreload(WorkerPlugin):
    """A dask worker plugin that loads the model when a worker starts, so the first scene on
    each worker is not charged for it and a model that cannot load fails before any scene."""

    name = "geocopgen-model"

    def __init__(self, model: str, device: str | None) -> None:
        self.model, self.device = model, device

    def setup(self, worker: Any) -> None:
        from geocopgen import api

        api.load_model(self.model, device=self.device)


# --- the run ------------------------------------------------------------------------------------
def plan_jobs(scenes: Sequence[Scene], to: str, output: Path, name: str, model: str,
              weights: str, device: str | None, reading: ReadOptions, sampling: TranslateOptions,
              writing: WriteOptions) -> tuple[list[Job], list[SceneResult]]:  # fmt: skip
    """Each scene's job, or its result when there is nothing to run: a missing condition
    (failed), an output complete for this key (skipped) or made with other settings (failed
    unless ``writing.overwrite``). ``weights``: the model's :func:`weights_sha256`."""
    jobs, settled, seen = [], [], {}
    for scene in scenes:
        try:
            out = output / name.format(stem=scene.id, id=scene.id, to=to)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"output name {name!r}: {exc}; use {{stem}}, {{id}}, {{to}}"
            ) from None
        if out in seen:
            raise ConfigError(
                f"scenes {seen[out]} and {scene.id} would both write {out}; make the output "
                "name unique (e.g. --name '{id}.{to}.tif')"
            )
        seen[out] = scene.id
        if scene.missing:
            settled.append(SceneResult(scene.id, "failed", str(out), "; ".join(scene.missing)))
            continue
        key = run_key(scene, to, weights, reading, sampling, writing)
        remove_leftovers(out)
        tag = completion(out) if out.exists() else None
        if tag == key and not writing.overwrite:
            settled.append(SceneResult(scene.id, "skipped", str(out), "complete"))
            continue
        if tag is not None and not writing.overwrite:
            settled.append(SceneResult(
                scene.id, "failed", str(out),
                f"{out} was made with other settings; pass --overwrite to replace it",
            ))  # fmt: skip
            continue
        if out.exists() and tag is None:
            log.info("%s has no completion tag: redoing it", out)
        jobs.append(Job(scene, out, to, key, model, device, reading, sampling, writing,
                        replace=out.exists()))  # fmt: skip
    return jobs, settled


def run_jobs(jobs: Sequence[Job], client: Any, *, retries: int = 1,
             resources: Mapping[str, float] | None = None, progress: bool = True,
             already: int = 0) -> list[SceneResult]:  # fmt: skip
    """Submit one task per job and collect the results as they finish, with one bar over all
    scenes (``already``: those settled without a task)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = {
        client.submit(translate_scene, job, key=f"translate-{job.scene.id}-{job.key[:12]}",
                      retries=retries, resources=dict(resources or {}) or None, pure=False): job
        for job in jobs
    }  # fmt: skip
    results = []
    with tqdm(total=len(jobs) + already, initial=already, unit="scene", disable=not progress,
              file=sys.stderr, desc="scenes") as bar:  # fmt: skip
        for future in as_completed(futures):
            job = futures[future]
            if future.status == "finished":
                results.append(future.result())
            else:
                exc = future.exception()
                reason = f"{type(exc).__name__}: {_one_line(exc)}"
                results.append(SceneResult(job.scene.id, "failed", str(job.output), reason))
            bar.update(1)
    return results


def make_client(scheduler: str | None = None, workers: int | None = None,
                dashboard: bool = False) -> tuple[Any, Any]:  # fmt: skip
    """A client of the scheduler at ``scheduler``, or of a new local cluster of ``workers``
    processes with one thread each (torch parallelises within a task only if asked to); returns
    ``(client, cluster)``, ``cluster`` ``None`` when not ours to close.

    The local workers start without dask's ``MALLOC_TRIM_THRESHOLD_=65536``: with it glibc hands
    every large temporary back to the system and faults it in again, and a translation ran 40 %
    slower in a worker than in a plain process (bench/bench_translate_many.py). A task holds one
    scene, so memory stays bounded without it."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None
        except OSError as exc:
            raise ConfigError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    with dask.config.set({NO_TRIM: None}):
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0" if dashboard else None)  # fmt: skip
    return Client(cluster), cluster


#: The dask setting that makes worker processes return freed memory eagerly (see make_client).
NO_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def check_writable(output: Path) -> None:
    """The output folder exists (created if missing) and is writable, before any work."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; translate_many writes into a folder")
    make_parents(output / "x")
