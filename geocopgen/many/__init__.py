"""Translate many scenes: ``geocopgen translate-many`` and :func:`translate_many`.

Scenes (:mod:`.scenes`) → one dask.distributed task per scene, each calling
:func:`geocopgen.api.translate` (:mod:`.engine`) → a STAC catalog of the outputs
(:mod:`.catalog`). See docs/scaling-out.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geocopgen.errors import ConfigError, InputError
from geocopgen.many.engine import (
    COMPLETE_TAG,
    ManyReport,
    ModelPreload,
    SceneResult,
    check_writable,
    make_client,
    plan_jobs,
    run_jobs,
    weights_sha256,
)
from geocopgen.many.scenes import (
    Scene,
    expand_paths,
    read_item_collection,
    scenes_from_files,
    scenes_from_items,
    scenes_from_majortom,
    search_items,
)

log = logging.getLogger(__name__)

__all__ = [
    "COMPLETE_TAG",
    "ManyReport",
    "Scene",
    "SceneResult",
    "scenes_from_majortom",
    "scenes_from_stac",
    "translate_many",
    "weights_sha256",
]


def scenes_from_stac(
    *,
    url: str | None = None,
    items: str | os.PathLike | None = None,
    collection: str | None = None,
    cond: Mapping[str, str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    max_days: float = 10.0,
    asset: str | None = None,
) -> list[Scene]:
    """Scenes from a live STAC search (``url``, ``collection``, ``bbox``, ``datetime``) or an
    ItemCollection file (``items``); ``cond`` maps a modality to the collection its condition
    comes from (nearest in time within ``max_days``, covering the scene)."""
    if (url is None) == (items is None):
        raise ConfigError("give a STAC API url or an ItemCollection file (items=), not both")
    if url is not None:
        if not collection:
            raise ConfigError("a STAC search needs the scenes' collection (--collection)")
        found = search_items(url, [collection, *(cond or {}).values()], bbox, datetime, max_days)
        base = None
    else:
        found = read_item_collection(items)
        base = str(Path(items).parent)
    return scenes_from_items(found, collection, cond, max_days=max_days, asset=asset, base=base)


def translate_many(
    scenes: Sequence[str | os.PathLike | Scene] | str | os.PathLike,
    to: str,
    output: str | os.PathLike,
    *,
    cond: Mapping[str, str] | None = None,
    name: str = "{id}.{to}.tif",
    list_file: str | os.PathLike | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 1,
    resources: Mapping[str, float] | None = None,
    catalog: bool = True,
    model: str = "default",
    device: str | None = None,
    dashboard: bool = False,
    **options: Any,
) -> ManyReport:
    """Translate every scene into modality ``to``, one dask task per scene, into the folder
    ``output`` (file names from ``name``: ``{id}``/``{stem}``, ``{to}``), and describe the
    outputs in ``output/catalog.json``.

    ``scenes``: paths and globs (``cond`` then maps a modality to a template on the scene's
    name, ``{stem}_s1.tif``), or :class:`Scene` values (:func:`scenes_from_stac`); ``list_file``
    adds the paths of a text file. ``client``, else ``scheduler`` (an address), else a local
    cluster of ``workers`` processes. Other ``options`` as in :func:`geocopgen.translate`; the
    seed is the same for every scene, and noise follows pixel positions within a scene, so each
    output equals ``translate`` of that scene alone. Failed scenes are reported in the result,
    not raised: check ``report.failed``.
    """
    from geocopgen.options import split_options

    if isinstance(scenes, (str, os.PathLike)):
        scenes = [scenes]
    given = [s for s in scenes if isinstance(s, Scene)]
    paths = expand_paths([s for s in scenes if not isinstance(s, Scene)], list_file)
    planned = given + scenes_from_files(paths, cond)
    if given and cond:
        raise ConfigError("cond= templates apply to paths; Scene values carry their conditions")
    if not planned:
        raise InputError("no scene to translate; give paths, globs, a list file or STAC items")
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError("translate_many needs a model folder or 'default': workers load it")
    folder = Path(output).absolute()  # workers may run elsewhere
    reading, sampling, writing = split_options(options, writing={"path": folder})  # per scene
    check_writable(folder)
    run = _run_properties(str(model), to, sampling, writing)
    jobs, settled = plan_jobs(planned, to, folder, name, str(model),
                              run["geocopgen:weights_sha256"], device, reading, sampling,
                              writing)  # fmt: skip
    results = list(settled)
    if jobs:
        own = client is None
        if own:
            client, cluster = make_client(scheduler, workers, dashboard)
        try:
            if dashboard and client.dashboard_link:
                log.warning("dask dashboard: %s", client.dashboard_link)
            client.register_plugin(ModelPreload(str(model), device))
            results += run_jobs(jobs, client, retries=retries, resources=resources,
                                progress=sampling.progress, already=len(settled))  # fmt: skip
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    report = ManyReport(results, properties=run)
    if catalog:
        from geocopgen.many.catalog import write_catalog

        report.catalog = write_catalog(folder, planned, results, run)
    return report


def _run_properties(model: str, to: str, sampling: Any, writing: Any) -> dict[str, Any]:
    """What every item of the run carries (the catalog's provenance)."""
    from geocopgen._version import __version__
    from geocopgen.precision import check_precision

    check_precision(sampling.precision)
    return {
        "geocopgen:model": "default (bundled)" if model == "default" else model,
        "geocopgen:weights_sha256": weights_sha256(model),
        "geocopgen:target": to,
        "geocopgen:seed": sampling.seed,
        "geocopgen:steps": sampling.steps if sampling.steps is not None else "model default",
        "geocopgen:samples": sampling.samples,
        "geocopgen:precision": sampling.precision,
        "geocopgen:version": __version__,
        "geocopgen:cog": writing.cog,
    }
