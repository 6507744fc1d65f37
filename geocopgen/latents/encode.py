"""Encode co-registered ModalityArrays into a latent store, in parallel with dask, resumably.

A :class:`Place` is one location (a Major TOM cell, a TerraMind tile, a STAC time step): one
ModalityArray per modality, all on the same grid. :func:`encode_places` cuts every place into
chips, records them in the store's chip table, and encodes the chips not yet complete in
batches, one dask task per batch: the threaded scheduler by default, or a
``dask.distributed`` client when given one. A batch that cannot be read (a corrupt product, a
missing file) is skipped, logged and counted; the run goes on and a later run retries it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dask
import numpy as np
import torch
import xarray as xr
from dask.callbacks import Callback

from geocopgen.errors import GridError
from geocopgen.latents.store import ChipRecord, LatentStore
from geocopgen.modalities import get_modality

log = logging.getLogger(__name__)


class MomentEncoder(Protocol):
    """What the store needs of an autoencoder: normalised ``(B, C, H, W)`` → moments."""

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Place:
    """One location, every modality on one grid."""

    name: str
    arrays: Mapping[str, xr.DataArray]
    datetime: str = ""
    sources: str = ""


@dataclass
class EncodeReport:
    """What a run did: chips planned, encoded now, already complete before, and failed."""

    planned: int = 0
    encoded: int = 0
    already_complete: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def codec_identity(model: Any, name: str | None = None) -> dict[str, Any]:
    """Name, weight hash and version of an autoencoder: a store refuses any other codec.

    The hash covers every parameter and buffer (names, shapes, bytes), so retrained weights are
    a different codec even with the same config.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # C order whatever the layout
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    config = getattr(model, "config", {})
    get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
    return {
        "name": name or type(model).__name__,
        "hash": digest.hexdigest()[:16],
        "version": str(get("_diffusers_version", "") or ""),
        "latent_channels": int(get("latent_channels", 0) or 0),
        "scaling_factor": float(get("scaling_factor", 1.0) or 1.0),
    }


def chip_windows(
    height: int, width: int, chip_size: int, overlap: int = 0
) -> list[tuple[int, int]]:
    """Top-left ``(row_off, col_off)`` of the chips of :class:`geocopgen.raster.chips.ChipGrid`.

    Training chips must be real pixels, so a raster smaller than a chip (which the chip grid
    would reflection-pad) is refused here.
    """
    from geocopgen.raster.chips import ChipGrid

    if height < chip_size or width < chip_size:
        raise GridError(
            f"raster of {height}x{width} px is smaller than the {chip_size} px chip; pass a "
            f"smaller chip size (a multiple of 8, e.g. {max(8, min(height, width) // 8 * 8)})"
        )
    grid = ChipGrid(height, width, chip_size=chip_size, overlap=overlap)
    return [(r, c) for r in grid.row_offsets for c in grid.col_offsets]


def plan_place(place: Place, chip_size: int, overlap: int = 0) -> list[ChipRecord]:
    """The chips of one place; every modality must share one grid."""
    from geocopgen.raster.grid import almost_equal, describe, grid_of

    grids = {m: grid_of(a, source=f"{place.name}/{m}") for m, a in place.arrays.items()}
    first_mod, grid = next(iter(grids.items()))
    for m, g in grids.items():
        # "one identical grid" written by other tools (the TerraMind tiles) differs by 1e-10 m
        if not almost_equal(g, grid):
            raise GridError(
                f"{place.name}: {m} is on {describe(g)}, {first_mod} on {describe(grid)}; "
                "co-register the modalities onto one grid first (geocopgen.io aligns them)"
            )
    return [
        ChipRecord.for_grid(
            place.name,
            r,
            c,
            grid[r : r + chip_size, c : c + chip_size],
            datetime=place.datetime,
            sources=place.sources,
        )
        for r, c in chip_windows(grid.height, grid.width, chip_size, overlap)
    ]


class _Batch:
    """One dask task's work: chips of one place.

    A plain class on purpose: dask traverses dataclasses and dicts in task arguments and would
    compute the lazy arrays inside as whole-array dependencies; it leaves this opaque.
    """

    __slots__ = ("chip_size", "indices", "place", "windows")

    def __init__(
        self, place: Place, indices: list[int], windows: list[tuple[int, int]], chip_size: int
    ) -> None:
        self.place, self.indices, self.windows, self.chip_size = place, indices, windows, chip_size


def _read_batch(
    batch: _Batch, modalities: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Physical pixels of a batch → normalised arrays (NaN filled) and valid fractions."""
    s = batch.chip_size
    out: dict[str, np.ndarray] = {}
    valid = np.zeros((len(batch.indices), len(modalities)), dtype=np.float32)
    for j, m in enumerate(modalities):
        arr = batch.place.arrays[m]
        chips = [arr.data[:, r : r + s, c : c + s] for r, c in batch.windows]
        with dask.config.set(scheduler="synchronous"):  # no nested parallelism inside a task
            x = np.stack(dask.compute(*chips)) if hasattr(chips[0], "dask") else np.stack(chips)
        ok = np.isfinite(x).all(axis=1)
        valid[:, j] = ok.mean(axis=(1, 2))
        x = x.astype(np.float32, copy=False)
        out[m] = get_modality(m).model_input(x, axis=1)  # in place: one array per batch
    return out, valid


def _encode_batch(
    batch: _Batch, store_path: str, codecs: Mapping[str, MomentEncoder], modalities: Sequence[str]
) -> tuple[int, list[str]]:
    """Read, encode and write one batch; errors are returned, not raised, so the run goes on."""
    keys = [f"{batch.place.name}|{r}|{c}" for r, c in batch.windows]
    try:
        x, valid = _read_batch(batch, modalities)
        with torch.inference_mode():
            moments = {
                m: codecs[m].encode_moments(torch.from_numpy(x[m])).numpy() for m in modalities
            }
    except Exception as exc:  # a corrupt chip must not abort the run
        msg = f"{keys[0]} (+{len(keys) - 1} chips): {type(exc).__name__}: {exc}"
        log.warning("skipping chips that cannot be encoded: %s", msg)
        return 0, [msg]
    LatentStore.open(store_path, mode="r+").write_chips(batch.indices, moments, valid)
    return len(batch.indices), []


def encode_places(
    places: Iterable[Place],
    store_path: str | Path,
    codecs: Mapping[str, MomentEncoder],
    *,
    chip_size: int = 256,
    overlap: int = 0,
    batch_size: int = 16,
    client: Any = None,
    num_workers: int | None = None,
    progress: bool = True,
    codec_ids: Mapping[str, Mapping[str, Any]] | None = None,
) -> EncodeReport:
    """Encode every chip of ``places`` into the store at ``store_path`` (created if needed).

    Resumable: chips already complete are skipped, so rerunning after a crash or kill finishes
    the job with no duplicate and no missing chip. Appendable: new places add new chips.
    ``client`` (a ``dask.distributed.Client``) runs the batches on its cluster instead of the
    local threads; the result is the same. geocopgen codecs are switched to their inference
    layout (``for_inference``: eval mode, channels-last weights, the same values).
    """
    mods = [get_modality(m).name for m in codecs]
    codecs = {get_modality(m).name: _for_inference(c) for m, c in codecs.items()}
    ids = {m: dict((codec_ids or {}).get(m) or codec_identity(codecs[m])) for m in mods}
    places = list(places)
    plans = [plan_place(p, chip_size, overlap) for p in places]
    latent_shape = {m: _latent_shape(codecs[m], get_modality(m).n_bands, chip_size) for m in mods}
    store = LatentStore.create_or_open(
        store_path, codecs=ids, latent_shape=latent_shape, chip_size=chip_size
    )
    for place in places:
        missing = set(mods) - set(place.arrays)
        if missing:
            raise GridError(f"{place.name}: no {', '.join(sorted(missing))} array to encode")
    report = EncodeReport()
    indices = [store.add_chips(plan) for plan in plans]
    done = store.complete
    batches: list[_Batch] = []
    for place, plan, idx in zip(places, plans, indices, strict=True):
        report.planned += len(plan)
        todo = [
            (int(i), (r.row_off, r.col_off)) for i, r in zip(idx, plan, strict=True) if not done[i]
        ]
        report.already_complete += len(plan) - len(todo)
        for k in range(0, len(todo), batch_size):
            part = todo[k : k + batch_size]
            batches.append(_Batch(place, [i for i, _ in part], [w for _, w in part], chip_size))
    results = run_tasks(
        _encode_batch, batches, str(store_path), codecs, (mods,), client, num_workers, progress
    )
    for n, errors in results:
        report.encoded += n
        report.errors += errors
    report.failed = report.planned - report.already_complete - report.encoded
    if report.failed:
        log.warning(
            "%d chips could not be encoded and stay incomplete (rerun to retry): %s",
            report.failed,
            "; ".join(report.errors[:5]),
        )
    return report


def _for_inference(codec: MomentEncoder) -> MomentEncoder:
    """geocopgen's codecs switch to their fast inference layout; other encoders pass as given."""
    prepare = getattr(codec, "for_inference", None)
    return prepare() if callable(prepare) else codec


def _latent_shape(codec: Any, n_bands: int, chip_size: int) -> tuple[int, int, int]:
    with torch.inference_mode():
        out = codec.encode_moments(torch.zeros(1, n_bands, chip_size, chip_size))
    return tuple(int(v) for v in out.shape[1:])  # type: ignore[return-value]


def run_tasks(
    task: Callable[..., tuple[int, list[str]]],
    batches: Sequence[Any],
    store_path: str,
    shared: Any,
    args: tuple[Any, ...],
    client: Any,
    num_workers: int | None,
    progress: bool,
) -> list[tuple[int, list[str]]]:
    """``task(batch, store_path, shared, *args)`` for every batch (each with ``.indices``): on
    local dask threads, or on a ``dask.distributed`` client with ``shared`` (the codecs, a
    model) sent to every worker once; a progress bar counts chips."""
    from tqdm.auto import tqdm

    if not batches:
        return []
    bar = tqdm(total=sum(len(b.indices) for b in batches), unit="chip", disable=not progress)
    if client is not None:
        from distributed import as_completed

        remote = client.scatter(shared, broadcast=True)
        futures = [client.submit(task, b, store_path, remote, *args, pure=False) for b in batches]
        results = []
        for fut in as_completed(futures):
            res = fut.result()
            bar.update(len(batches[futures.index(fut)].indices))
            results.append(res)
        bar.close()
        return results
    tasks = [dask.delayed(task, pure=False)(b, store_path, shared, *args) for b in batches]
    sizes = {t.key: len(b.indices) for t, b in zip(tasks, batches, strict=True)}
    with _ProgressCallback(lambda key: bar.update(sizes.get(key, 0))):
        results = dask.compute(*tasks, scheduler="threads", num_workers=num_workers)
    bar.close()
    return list(results)


class _ProgressCallback(Callback):
    def __init__(self, on_done: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_done = on_done

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._on_done(key)
