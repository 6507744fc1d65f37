"""Which scenes a many-scene run translates, and each scene's conditions, found by a rule.

A scene is plain data (paths or URLs, no open files), so it travels to a dask worker as is and
the worker reads it through the same readers as ``geocopgen translate``. Scenes come from paths
and globs, a text file of paths, a STAC ItemCollection file or a live STAC search. Conditions are
found by a rule, never listed by hand: for files, a template on the scene's name
(``{stem}_s1.tif``); for STAC, the item of another collection that covers the scene and is
nearest in time. A scene whose condition is missing keeps the reason, so the run reports it
instead of translating without it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from geocopgen.errors import ConfigError, DataSourceError, InputError
from geocopgen.io.raster_source import is_remote
from geocopgen.modalities import get_modality

#: Share of a scene's footprint a STAC condition item must cover to be used (lon/lat areas; the
#: 1 % slack absorbs footprints simplified by the catalog).
MIN_COVER = 0.99


@dataclass(frozen=True)
class Scene:
    """One translation: ``source`` and its conditions (modality → path or URL), an ``id`` that
    names the output, the acquisition time if known, and ``missing``: why a condition could not
    be found (the run reports such a scene as failed instead of translating it)."""

    id: str
    source: str
    cond: Mapping[str, str] = field(default_factory=dict)
    datetime: str | None = None
    missing: tuple[str, ...] = ()
    links: tuple[str, ...] = ()

    @property
    def inputs(self) -> list[str]:
        """Every input, source first (what the catalog links to)."""
        return [self.source, *self.cond.values()]


# --- files -------------------------------------------------------------------------------------
def expand_paths(patterns: Iterable[str | os.PathLike], list_file: str | os.PathLike | None = None
                 ) -> list[str]:  # fmt: skip
    """Paths, globs (``scenes/*.tif``) and the lines of ``list_file`` (blank lines and ``#``
    comments skipped; relative paths are relative to the list file), in order, each once. A
    glob that matches nothing is an error: a typo must not make an empty run."""
    found: list[str] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if is_remote(text) or not glob.has_magic(text):
            found.append(text)
            continue
        matches = sorted(glob.glob(text))
        if not matches:
            raise InputError(f"{text}: no file matches this pattern; check the path")
        found += matches
    if list_file is not None:
        try:
            lines = Path(list_file).read_text().splitlines()
        except OSError as exc:
            raise InputError(
                f"{list_file}: cannot read the list of scenes ({exc.strerror})"
            ) from None
        base = Path(list_file).parent
        for line in (s.strip() for s in lines):
            if line and not line.startswith("#"):
                local = not is_remote(line) and not Path(line).is_absolute()
                found.append(str(base / line) if local else line)
    return list(dict.fromkeys(found))


def fill_template(template: str, source: str) -> str:
    """A condition's path from ``template`` and the scene's ``source``: ``{stem}`` (name without
    extension), ``{name}``, ``{parent}`` (its folder). A relative result is taken relative to the
    scene's folder, so ``{stem}_s1.tif`` sits beside the scene."""
    remote = is_remote(source)
    name = source.rstrip("/").rsplit("/", 1)[-1]
    parent = source.rstrip("/")[: -len(name) - 1] if remote else str(Path(source).parent)
    try:
        filled = template.format(stem=name.split(".", 1)[0], name=name, parent=parent)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"condition template {template!r}: {exc}; use {{stem}}, {{name}} or {{parent}}"
        ) from None
    if is_remote(filled) or Path(filled).is_absolute():
        return filled
    return urljoin(source, filled) if remote else os.path.normpath(Path(parent) / filled)


def scenes_from_files(
    paths: Sequence[str], cond: Mapping[str, str] | None = None
) -> list[Scene]:
    """One scene per path, made absolute (a worker may run in another folder, and a rerun from
    elsewhere must find its outputs complete); each condition from its template (modality →
    template). A condition file that does not exist is recorded as missing (URLs are taken on
    trust: the worker's read reports them)."""
    templates = {get_modality(k).name: v for k, v in (cond or {}).items()}
    scenes = []
    for source in (p if is_remote(p) else os.path.abspath(p) for p in paths):
        found, missing = {}, []
        for modality, template in templates.items():
            path = fill_template(template, source)
            if is_remote(path) or Path(path).exists():
                found[modality] = path
            else:
                missing.append(f"missing condition {modality}: {path} does not exist")
        name = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
        scenes.append(Scene(name, source, found, missing=tuple(missing)))
    return scenes


# --- Major TOM ---------------------------------------------------------------------------------
def scenes_from_majortom(
    root: str | os.PathLike,
    source: str | None = None,
    *,
    cells: Sequence[str] | None = None,
    cond: Mapping[str, str] | None = None,
    max_days: float = 10.0,
) -> list[Scene]:
    """One scene per product of a local Major TOM folder (``<root>/<source>/<row>/<cell>/
    <product>/``, a band folder the readers read), narrowed to ``cells``. Each condition
    (modality → another source under ``root``, e.g. ``s1rtc=Core-S1RTC``) is that source's
    product of the same cell nearest in time within ``max_days``; ties go to the earlier
    product, and a timeless product (Core-DEM) matches any time. A cell without one records the
    condition as missing, with the reason."""
    import pandas as pd

    from geocopgen.sources.majortom import MajorTOM

    dataset = MajorTOM.from_folder(root, source)
    if cells:
        dataset = dataset.filter(cells=list(cells))
        if not len(dataset):
            raise InputError(f"{root}: no product of the cells {', '.join(cells)} in {source}")
    others = {get_modality(m).name: (s, MajorTOM.from_folder(root, s).table)
              for m, s in (cond or {}).items()}  # fmt: skip
    limit = pd.Timedelta(days=max_days)
    scenes = []
    for row in dataset.table.sort_values(["grid_cell", "timestamp"]).itertuples():
        found, missing = {}, []
        for modality, (name, table) in others.items():
            same = table[table.grid_cell == row.grid_cell]
            gap = (same.timestamp - row.timestamp).abs().fillna(pd.Timedelta(0))
            near = same.assign(gap=gap).sort_values(["gap", "timestamp"])
            if near.empty or near.gap.iloc[0] > limit:
                why = "none" if near.empty else f"the nearest is {near.gap.iloc[0].days} days away"
                missing.append(f"missing condition {modality}: no {name} product of cell "
                               f"{row.grid_cell} within {max_days:g} days ({why})")  # fmt: skip
            else:
                found[modality] = str(near.path.iloc[0])
        when = None if pd.isna(row.timestamp) else row.timestamp.isoformat()
        scenes.append(Scene(f"{row.grid_cell}_{row.product_id}", str(Path(row.path).resolve()),
                            found, datetime=when, missing=tuple(missing)))  # fmt: skip
    return scenes


# --- STAC --------------------------------------------------------------------------------------
def asset_href(item: Any, asset: str | None, base: str | None = None) -> str:
    """The href of an item's asset ``asset`` or, if not given, of its one ``data`` asset; a
    relative href is resolved against ``base`` (the ItemCollection file's folder)."""
    assets = item.assets
    if asset is None:
        data = [k for k, a in assets.items() if "data" in (a.roles or [])] or list(assets)
        if len(data) != 1:
            raise DataSourceError(
                f"STAC item {item.id}: {len(data)} data assets ({', '.join(data) or 'none'}); "
                "name the one to translate with --asset KEY"
            )
        asset = data[0]
    if asset not in assets:
        raise DataSourceError(
            f"STAC item {item.id} has no asset {asset!r} (it has {', '.join(assets)}); "
            "pick one with --asset"
        )
    href = assets[asset].get_absolute_href() or assets[asset].href
    if base is not None and not is_remote(href) and not Path(href).is_absolute():
        href = str(Path(base) / href)
    return href


def _when(item: Any) -> datetime:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise DataSourceError(f"STAC item {item.id} has no datetime; it cannot be paired by time")
    return when


def _cover(scene: Any, other: Any) -> float:
    """Share of ``scene``'s footprint that ``other``'s covers (lon/lat geometries)."""
    from shapely.geometry import shape

    a, b = shape(scene.geometry), shape(other.geometry)
    return float(a.intersection(b).area / a.area) if a.area > 0 else 0.0


def nearest_item(scene: Any, candidates: Iterable[Any], max_days: float) -> tuple[Any, str]:
    """The candidate that covers ``scene`` (at least :data:`MIN_COVER` of its footprint) and is
    nearest in time within ``max_days``; ``(None, why)`` when there is none. Ties in time go to
    the larger cover, then the earlier item, then the smaller id, so a rerun pairs the same way.
    A candidate that covers only part of the scene is never used: a partial condition would be
    read as nodata over the rest, and the model would translate that part without it."""
    when = _when(scene)
    limit = timedelta(days=max_days)
    best: list[tuple[timedelta, float, datetime, str, Any]] = []
    partial = []
    for item in candidates:
        gap = abs(_when(item) - when)
        if gap > limit:
            continue
        cover = _cover(scene, item)
        if cover >= MIN_COVER:
            best.append((gap, -cover, _when(item), item.id, item))
        elif cover > 0:
            partial.append(f"{item.id} ({cover:.0%})")
    if best:
        return min(best, key=lambda t: t[:4])[-1], ""
    why = f"no item within {max_days:g} days covers the scene"
    return None, why + (f"; only partly: {', '.join(partial)}" if partial else "")


def scenes_from_items(
    items: Sequence[Any],
    collection: str | None,
    cond: Mapping[str, str] | None,
    *,
    max_days: float = 10.0,
    asset: str | None = None,
    base: str | None = None,
) -> list[Scene]:
    """Scenes from STAC items: those of ``collection`` (all but the condition collections if
    ``None``) are scenes; ``cond`` maps a modality to the collection its condition comes from,
    paired by :func:`nearest_item`."""
    conds = {get_modality(k).name: v for k, v in (cond or {}).items()}
    scene_items = [
        i for i in items
        if (i.collection_id == collection if collection else i.collection_id not in conds.values())
    ]  # fmt: skip
    if not scene_items:
        raise DataSourceError(f"no STAC item of collection {collection!r} to translate")
    scenes = []
    for item in scene_items:
        found, missing, links = {}, [], [item.get_self_href() or item.id]
        for modality, other in conds.items():
            pool = [i for i in items if i.collection_id == other]
            match, why = nearest_item(item, pool, max_days)
            if match is None:
                missing.append(f"missing condition {modality} ({other}): {why}")
                continue
            found[modality] = asset_href(match, None, base)
            links.append(match.get_self_href() or match.id)
        scenes.append(
            Scene(item.id, asset_href(item, asset, base), found, _when(item).isoformat(),
                  tuple(missing), tuple(links))
        )  # fmt: skip
    return scenes


def read_item_collection(path: str | os.PathLike) -> list[Any]:
    """The items of a STAC ItemCollection (GeoJSON FeatureCollection) file."""
    import pystac

    try:
        return list(pystac.ItemCollection.from_file(os.fspath(path)))
    except (OSError, ValueError, KeyError, pystac.STACError) as exc:
        raise InputError(f"{path}: not a readable STAC ItemCollection ({exc})") from None


def search_items(
    url: str,
    collections: Sequence[str],
    bbox: Sequence[float] | None,
    datetime_range: str | None,
    max_days: float = 0.0,
) -> list[Any]:
    """Items of ``collections`` from a live STAC API (pystac-client). The condition collections
    are searched with the time range widened by ``max_days`` on both sides, so a scene at the
    edge of the range still finds its nearest condition."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(url)
        items = list(
            client.search(collections=[collections[0]], bbox=bbox, datetime=datetime_range).items()
        )
        if len(collections) > 1:
            wide = _widen(datetime_range, max_days)
            items += client.search(collections=list(collections[1:]), bbox=bbox,
                                   datetime=wide).items()  # fmt: skip
    except (APIError, OSError, ValueError) as exc:
        raise DataSourceError(f"STAC search at {url} failed: {exc}") from None
    return list({(i.collection_id, i.id): i for i in items}.values())


def _widen(datetime_range: str | None, days: float) -> str | None:
    """``A/B`` widened by ``days`` on both sides (open ends stay open)."""
    if not datetime_range or not days:
        return datetime_range
    ends = datetime_range.split("/") if "/" in datetime_range else [datetime_range] * 2
    out = []
    for end, sign in zip(ends, (-1, 1), strict=True):
        if end in ("", ".."):
            out.append(end)
            continue
        stamp = datetime.fromisoformat(end.replace("Z", "+00:00"))
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        out.append((stamp + sign * timedelta(days=days)).isoformat())
    return "/".join(out)
