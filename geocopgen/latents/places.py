"""Build :class:`~geocopgen.latents.encode.Place` objects from each kind of source.

* :func:`places_from_folder`: ``<root>/<MODALITY>/<name>.tif`` (one folder per modality, same
  file name = same place, e.g. the TerraMind examples);
* :func:`places_from_majortom`: one Major TOM dataset per modality, cells present in all;
* :func:`places_from_stac`: one place per time step of the first modality's search, the other
  modalities loaded onto its grid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from geocopgen.errors import DataSourceError, GridError, UnknownModalityError
from geocopgen.latents.encode import Place
from geocopgen.modalities import get_modality

log = logging.getLogger(__name__)


def places_from_folder(
    root: str | Path, modalities: Sequence[str] | None = None, pattern: str = "*.tif"
) -> list[Place]:
    """Places from a folder of co-registered rasters, one sub-folder per modality.

    Sub-folders that are not a modality (e.g. ``LULC``) are ignored unless asked for, which is
    an error. Only names present in every modality folder become places.
    """
    from geocopgen.io.readers import open_raster

    root = Path(root)
    folders: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            folders[get_modality(sub.name).name] = sub
        except UnknownModalityError:
            log.info("%s: not a modality folder, ignored", sub)
    wanted = [get_modality(m).name for m in modalities] if modalities else list(folders)
    missing = [m for m in wanted if m not in folders]
    if missing or not wanted:
        raise DataSourceError(
            f"{root}: no folder for {', '.join(missing) or 'any modality'}; expected "
            f"<root>/<MODALITY>/<name>.tif with MODALITY among S2L1C, S2L2A, S1RTC, DEM"
        )
    names = [{p.stem for p in folders[m].glob(pattern)} for m in wanted]
    common = sorted(set.intersection(*names))
    if not common:
        raise DataSourceError(f"{root}: no file name present in every modality folder {wanted}")
    places = []
    for name in common:
        arrays = {m: open_raster(next(folders[m].glob(f"{name}.*")), m) for m in wanted}
        places.append(
            Place(name, arrays, _attr(arrays, "datetime"), ",".join(f"{m}/{name}" for m in wanted))
        )
    return places


def places_from_majortom(sources: Mapping[str, Any]) -> Iterator[Place]:
    """Places from Major TOM datasets (``{modality: MajorTOM}``), latest product per cell.

    A cell whose products are in different UTM zones (possible near zone borders) cannot be
    chipped on one grid and is skipped with a warning.
    """
    from geocopgen.sources.majortom import common_cells

    latest = {m: s.latest() for m, s in sources.items()}
    for cell in common_cells(*latest.values()):
        arrays = {get_modality(m).name: s.open(cell) for m, s in latest.items()}
        crs = {str(a.rio.crs) for a in arrays.values()}
        if len(crs) > 1:
            log.warning("%s: modalities in different CRSs %s; cell skipped", cell, sorted(crs))
            continue
        sources_ids = ",".join(a.attrs.get("product_id", "") for a in arrays.values())
        yield Place(cell, arrays, _attr(arrays, "datetime"), sources_ids)


def places_from_stac(
    source: Any,
    modalities: Sequence[str],
    *,
    bbox: Sequence[float],
    datetime: str | None = None,
    cloud_cover: tuple[float, float] | None = None,
    crs: Any = None,
    resolution: float | None = None,
    max_items: int | None = 100,
) -> list[Place]:
    """Places from a STAC search: one per time step of the first modality.

    The other modalities are searched over the same bbox and datetime, loaded onto the first
    one's grid (``like=``), and their first time step is used (a DEM has one).
    """
    mods = [get_modality(m).name for m in modalities]
    first, *others = mods
    items = source.search(
        first, bbox=bbox, datetime=datetime, cloud_cover=cloud_cover, max_items=max_items
    )
    steps = source.load(items, first, crs=crs, resolution=resolution, bbox=bbox)
    places = []
    for k, arr in enumerate(steps):
        arrays = {first: arr}
        for m in others:
            other = source.search(m, bbox=bbox, datetime=None if m == "dem" else datetime)
            arrays[m] = source.load(other, m, like=arr)[0]
        name = f"{arr.attrs.get('items', 'stac').split(',')[0]}_{k}"
        ids = ",".join(a.attrs.get("items", "") for a in arrays.values())
        places.append(Place(name, arrays, arr.attrs.get("datetime", ""), ids))
    if not places:
        raise GridError(f"STAC search over {bbox} gave nothing to encode")
    return places


def _attr(arrays: Mapping[str, Any], key: str) -> str:
    for a in arrays.values():
        if a.attrs.get(key):
            return str(a.attrs[key])
    return ""
