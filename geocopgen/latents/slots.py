"""Encode places into a COP-GEN latent store: one array per image slot, each at its own size.

A chip is 1920 m of ground at a 10 m origin on the 60 m step (every slot's chip then starts on
a whole pixel of its own grid). Its pixels are what translation and the bundled recipe see:
:func:`~geocopgen.copgen.places.slot_place` (reprojection onto ``at_resolution(scene,
resolution)``, then :func:`~geocopgen.copgen.units.to_model_units`). Each slot's codec writes
its raw posterior moments (mean ‖ log-variance, unscaled; a
:class:`~geocopgen.copgen.codec.PatchCodec` writes its latent and a constant log-variance), and
the chip table keeps the chip centre's lon/lat and the place's date for the scalar slots.

Places are read and encoded one at a time, so memory holds one place; a place whose chips are
all complete is not read at all, which is what makes a rerun after a kill cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import numpy as np
import torch

from geocopgen.copgen import vae as vae_ops
from geocopgen.copgen.layout import CHIP_GROUND_SIZE_M, MODALITY_SLOTS
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.places import CHIP_STEP_M, SlotPlace, chip_origins, slot_grid, slot_place
from geocopgen.errors import ConfigError, ModalityError
from geocopgen.io.align import model_grid
from geocopgen.latents.encode import EncodeReport, Place, codec_identity, run_tasks
from geocopgen.latents.store import ChipRecord, LatentStore
from geocopgen.raster.grid import GeoBox, grid_of

log = logging.getLogger(__name__)

#: The 10 m chip side of a COP-GEN store (``chip_size`` in its attrs).
CHIP_PX_10M = round(CHIP_GROUND_SIZE_M / 10.0)


def store_slots(model: CopgenModel, modalities: Sequence[str]) -> list[str]:
    """The image slots of ``modalities``, each of which ``model`` must have a codec for."""
    keys = [k for m in modalities for k in MODALITY_SLOTS[m]]
    missing = [k for k in keys if k not in model.vaes]
    if missing:
        raise ModalityError(
            f"the model has no codec for {', '.join(missing)} (it encodes "
            f"{', '.join(model.encodable) or 'nothing'}); leave that modality out of the inputs "
            "or encode with a model that has it"
        )
    return keys


def slot_codec_ids(
    model: CopgenModel, keys: Sequence[str], model_dir: str | os.PathLike
) -> dict[str, dict[str, Any]]:
    """Per slot: the model folder and the codec's weight hash (a store refuses other codecs)."""
    return {key: codec_identity(model.vaes[key], name=str(model_dir)) for key in keys}


def place_date(place: Place) -> date | None:
    """The place's acquisition date, when its metadata says it."""
    try:
        return date.fromisoformat(place.datetime[:10]) if place.datetime else None
    except ValueError:
        return None


def place_scene(place: Place) -> GeoBox:
    """The 10 m working grid of a place, from its first array (as translation derives it)."""
    return model_grid(grid_of(next(iter(place.arrays.values()))))


def plan_slot_place(place: Place, keys: Sequence[str], stride_m: float) -> list[ChipRecord]:
    """The chips of one place on its 10 m scene grid (from the grids alone, nothing read)."""
    scene = place_scene(place)
    shapes = {k: slot_grid(scene, k).shape for k in keys}
    geo = SlotPlace(place.name, scene, {}, {})
    when = place_date(place)
    return [
        ChipRecord.for_grid(
            place.name,
            r,
            c,
            scene[r : r + CHIP_PX_10M, c : c + CHIP_PX_10M],
            datetime=when.isoformat() if when else "",
            sources=place.sources,
            lonlat=geo.chip_centre_lonlat(r, c),
        )
        for r, c in chip_origins(scene, shapes, stride_m)
    ]


def encode_slot_places(
    places: Iterable[Place],
    store_path: str | os.PathLike,
    model: CopgenModel,
    model_dir: str | os.PathLike,
    *,
    stride_m: float = CHIP_GROUND_SIZE_M,
    batch_size: int = 8,
    client: Any = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> EncodeReport:
    """Encode every chip of ``places`` (all with the same modalities) into the COP-GEN store
    at ``store_path`` with ``model``'s codecs; resumable and appendable like
    :func:`~geocopgen.latents.encode_places`, one dask task per place (local threads, or the
    ``dask.distributed`` ``client``). ``stride_m``: metres between chip origins, a multiple of
    60 (1920: chips side by side, the last one flush with the far edge)."""
    if stride_m < CHIP_STEP_M or stride_m % CHIP_STEP_M:
        raise ConfigError(f"the chip stride must be a multiple of 60 m, got {stride_m}")
    places = list(places)
    if not places:
        raise ConfigError(f"{store_path}: no place to encode")
    modalities = [m for m in MODALITY_SLOTS if m in places[0].arrays]
    for place in places:
        if sorted(place.arrays) != sorted(modalities):
            raise ConfigError(
                f"{place.name} has {sorted(place.arrays)}, {places[0].name} has "
                f"{sorted(modalities)}: every place of a store has the same modalities"
            )
    keys = store_slots(model, modalities)
    shapes = {k: (2 * model.slot(k).latent_shape[0], *model.slot(k).latent_shape[1:]) for k in keys}
    store = LatentStore.create_or_open(
        store_path,
        codecs=slot_codec_ids(model, keys, model_dir),
        latent_shape=shapes,
        chip_size=CHIP_PX_10M,
        kind="copgen",
    )
    plans = [plan_slot_place(p, keys, stride_m) for p in places]
    indices = [store.add_chips(plan) for plan in plans]
    done = store.complete
    report = EncodeReport(planned=sum(len(p) for p in plans))
    batches = []
    for place, plan, idx in zip(places, plans, indices, strict=True):
        todo = [
            (int(i), (r.row_off, r.col_off)) for i, r in zip(idx, plan, strict=True) if not done[i]
        ]
        report.already_complete += len(plan) - len(todo)
        if todo:  # a place whose chips are all complete is not read
            batches.append(_SlotBatch(place, [i for i, _ in todo], [o for _, o in todo]))
    results = run_tasks(
        _encode_place, batches, str(store_path), model, (keys, batch_size), client, num_workers,
        progress,
    )  # fmt: skip
    for n, errors in results:
        report.encoded += n
        report.errors += errors
    report.failed = report.planned - report.already_complete - report.encoded
    if report.failed:
        log.warning("%d chips stay incomplete (rerun to retry): %s", report.failed,
                    "; ".join(report.errors[:5]))  # fmt: skip
    return report


class _SlotBatch:
    """One dask task's work: the incomplete chips of one place (a plain class, so dask leaves
    the lazy arrays inside alone; see ``latents.encode._Batch``)."""

    __slots__ = ("indices", "origins", "place")

    def __init__(self, place: Place, indices: list[int], origins: list[tuple[int, int]]) -> None:
        self.place, self.indices, self.origins = place, indices, origins


def _encode_place(
    batch: _SlotBatch, store_path: str, model: CopgenModel, keys: Sequence[str], batch_size: int
) -> tuple[int, list[str]]:
    """Read one place through the slot pixel path, encode its chips in batches, write each
    batch (data, then complete flags); errors are returned, not raised, so the run goes on."""
    place, done = batch.place, 0
    try:
        slots = slot_place(
            place.name, place.arrays, when=place_date(place), scene=place_scene(place)
        )
        store = LatentStore.open(store_path, mode="r+")
        for k in range(0, len(batch.indices), batch_size):
            part = slice(k, k + batch_size)
            moments, valid = encode_chips(model, slots, keys, batch.origins[part])
            store.write_chips(batch.indices[part], moments, valid)
            done += len(batch.indices[part])
    except Exception as exc:  # an unreadable place must not abort the run
        log.warning("skipping chips of %s that cannot be encoded: %s", place.name, exc)
        return done, [f"{place.name}: {type(exc).__name__}: {exc}"]
    return done, []


@torch.inference_mode()
def encode_chips(
    model: CopgenModel, place: SlotPlace, keys: Sequence[str], origins: Sequence[tuple[int, int]]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each slot's posterior moments of the chips at ``origins``, and their valid fractions."""
    moments: dict[str, np.ndarray] = {}
    valid = np.zeros((len(origins), len(keys)), dtype=np.float32)
    for j, key in enumerate(keys):
        windows = [place.window(key, r, c) for r, c in origins]
        x = torch.stack([place.pixels[key][(slice(None), *w)] for w in windows])
        valid[:, j] = [float(place.valid[key][w].float().mean()) for w in windows]
        moments[key] = vae_ops.encode_moments(model.vaes[key], x).float().numpy()
    return moments, valid


__all__ = ["CHIP_PX_10M", "encode_chips", "encode_slot_places", "plan_slot_place", "store_slots"]
