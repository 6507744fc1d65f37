"""STAC: search with pystac-client, load lazily with odc-stac, hand back ModalityArrays.

Collection presets map each geocopgen modality to a collection and its per-band asset names on
the common public APIs (Element 84 Earth Search v1 and Microsoft Planetary Computer). The pixel
grid is always explicit — a ``GeoBox``, a ModalityArray to match, a Major TOM cell, or
``(crs, resolution)`` — and so is the resampling (the modality's, bilinear, unless given), so
a load never shifts by half a pixel or silently snaps to another grid (odc-stac's default
anchor snaps pixel edges to multiples of the resolution).

Per-item radiometry is applied after loading, by the same :class:`~geocopgen.io.Decoding` every
geocopgen reader decodes with: Sentinel-2 digital numbers get the offset of each item's
processing baseline (or none when the API already removed it), Sentinel-1 RTC linear power
becomes dB, nodata becomes NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox

from geocopgen.errors import DataSourceError
from geocopgen.io import Decoding, modality_array
from geocopgen.io.decoding import PHYSICAL, S1_LINEAR, S2_DN, nodata_values
from geocopgen.modalities import Modality, get_modality, s2_offset

log = logging.getLogger(__name__)

_S2_COMMON = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip


@dataclass(frozen=True)
class CollectionPreset:
    """How one modality is published by one STAC API."""

    collection: str
    assets: Mapping[str, str]  # modality band name → asset key
    nodata: float | None = None  # raw value meaning "no data"
    cloud_property: str | None = "eo:cloud_cover"


def _s2(collection: str, modality: str, common_names: bool) -> CollectionPreset:
    bands = get_modality(modality).band_names
    return CollectionPreset(
        collection, {b: (_S2_COMMON[b] if common_names else b) for b in bands}, nodata=0
    )


#: API name → modality → preset. Add your own with ``PRESETS["my-api"] = {...}``.
PRESETS: dict[str, dict[str, CollectionPreset]] = {
    "earth-search": {
        "s2l2a": _s2("sentinel-2-l2a", "s2l2a", common_names=True),
        "s2l1c": _s2("sentinel-2-l1c", "s2l1c", common_names=True),
        "dem": CollectionPreset("cop-dem-glo-30", {"elevation": "data"}, None, None),
    },
    "planetary-computer": {
        "s2l2a": _s2("sentinel-2-l2a", "s2l2a", common_names=False),
        "s1rtc": CollectionPreset("sentinel-1-rtc", {"VV": "vv", "VH": "vh"}, -32768.0, None),
        "dem": CollectionPreset("cop-dem-glo-30", {"elevation": "data"}, None, None),
    },
}
API_URLS = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
}


@dataclass
class StacSource:
    """A STAC API and the preset naming its collections and assets.

    ``StacSource("earth-search")`` uses the public URL; ``StacSource(url, preset="earth-search")``
    a mirror or a local server with the same naming. ``patch_url`` signs asset URLs (e.g.
    ``planetary_computer.sign``).
    """

    url: str
    preset: str | Mapping[str, CollectionPreset] | None = None
    patch_url: Callable[[str], str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset is None and self.url in PRESETS:
            self.preset = self.url
        if isinstance(self.preset, str):
            if self.preset not in PRESETS:
                raise DataSourceError(
                    f"unknown STAC preset {self.preset!r}; known: {', '.join(PRESETS)}"
                )
            self.url = API_URLS.get(self.url, self.url)
            self.preset = PRESETS[self.preset]
        if not self.preset:
            raise DataSourceError(
                f"{self.url}: give preset= (one of {', '.join(PRESETS)}, or a mapping "
                "modality → CollectionPreset) so geocopgen knows which assets hold which bands"
            )

    def preset_for(self, modality: str | Modality) -> CollectionPreset:
        mod = get_modality(modality)
        try:
            return self.preset[mod.name]  # type: ignore[index]
        except KeyError:
            raise DataSourceError(
                f"{self.url}: no collection preset for {mod.long_name}; this API's preset has "
                f"{', '.join(self.preset)}"  # type: ignore[arg-type]
            ) from None

    def search(
        self,
        modality: str | Modality,
        *,
        bbox: Sequence[float] | None = None,
        intersects: Any = None,
        datetime: str | None = None,
        cloud_cover: tuple[float, float] | None = None,
        max_items: int | None = 100,
    ) -> list[pystac.Item]:
        """Items of the modality's collection over an area and time, cloud cover filtered.

        Cloud cover is filtered here, on the items' ``eo:cloud_cover``, so it works on every
        API whether or not it implements the query extension.
        """
        from pystac_client import Client

        preset = self.preset_for(modality)
        try:
            client = Client.open(self.url, headers=self.headers or None)
            search = client.search(
                collections=[preset.collection],
                bbox=bbox,
                intersects=intersects,
                datetime=datetime,
                max_items=max_items,
            )
            items = list(search.items())
        except Exception as exc:  # pystac-client raises APIError, requests errors, ...
            raise DataSourceError(f"{self.url}: STAC search failed ({exc})") from exc
        if cloud_cover is not None and preset.cloud_property:
            lo, hi = cloud_cover
            items = [
                i
                for i in items
                if lo <= float(i.properties.get(preset.cloud_property, np.nan)) <= hi
            ]
        if not items:
            raise DataSourceError(
                f"{self.url}: no {preset.collection} items for bbox={bbox}, "
                f"datetime={datetime}, cloud_cover={cloud_cover}; widen the search"
            )
        return items

    def load(
        self,
        items: Iterable[pystac.Item],
        modality: str | Modality,
        *,
        geobox: GeoBox | None = None,
        like: xr.DataArray | None = None,
        crs: Any = None,
        resolution: float | None = None,
        bbox: Sequence[float] | None = None,
        resampling: str | None = None,
        groupby: str = "solar_day",
        chunks: Mapping[str, int] | None = None,
    ) -> list[xr.DataArray]:
        """Items → one lazy ModalityArray per time step (``groupby``), all on one explicit grid.

        The grid is ``geobox``, or the grid of ``like``, or ``crs`` + ``resolution`` (default:
        the modality's 10 m) over ``bbox`` (default: the items' extent) with pixel edges on the
        grid of the first item's 10 m asset, so native-grid loads are not resampled.
        """
        import odc.stac

        mod = get_modality(modality)
        preset = self.preset_for(mod)
        items = list(items)
        if not items:
            raise DataSourceError(f"{self.url}: no items to load")
        _check_assets(items, preset, mod)
        geobox = geobox or _geobox(items, preset, mod, like, crs, resolution, bbox)
        assets = [preset.assets[b] for b in mod.band_names]
        ds = odc.stac.load(
            items,
            bands=assets,
            geobox=geobox,
            groupby=groupby,
            resampling=resampling or mod.resampling,
            chunks=dict(chunks) if chunks is not None else {"x": 2048, "y": 2048},
            patch_url=self.patch_url,
            fail_on_error=True,
            preserve_original_order=True,
        )
        out = []
        for t in range(ds.sizes["time"]):
            when = ds.time.values[t]
            group = [i for i in items if _same_group(i, when, groupby)] or items[:1]
            out.append(self._to_modality_array(ds.isel(time=t), assets, mod, preset, group))
        return out

    def _to_modality_array(
        self,
        ds: xr.Dataset,
        assets: list[str],
        mod: Modality,
        preset: CollectionPreset,
        group: list[pystac.Item],
    ) -> xr.DataArray:
        raw = xr.concat([ds[a] for a in assets], dim="band")
        nodata = nodata_values([ds[a].attrs.get("nodata") for a in assets] + [preset.nodata])
        attrs: dict[str, Any] = {
            "items": ",".join(i.id for i in group),
            "datetime": str(np.datetime_as_string(ds.time.values, unit="s")) + "Z",
        }
        encoding, offset = PHYSICAL, 0
        if mod.name.startswith("s2"):
            encoding, offset = S2_DN, _item_s2_offset(group[0])
        elif mod.name == "s1rtc":
            encoding = S1_LINEAR
        # odc-stac fills pixels outside the items with the nodata value, or NaN for floats.
        decoding = Decoding(mod, encoding, offset, nodata, nan_is_nodata=True, source=self.url)
        attrs.update(decoding.reading_attrs())
        data = raw.data.map_blocks(decoding.decode, dtype=np.float32)
        return modality_array(data, ds.odc.geobox, mod, source=self.url, **attrs)


def _check_assets(items: list[pystac.Item], preset: CollectionPreset, mod: Modality) -> None:
    for item in items:
        missing = [b for b in mod.band_names if preset.assets[b] not in item.assets]
        if missing:
            keys = [preset.assets[b] for b in missing]
            raise DataSourceError(
                f"STAC item {item.id}: no asset {', '.join(keys)} for band(s) "
                f"{', '.join(missing)} of {mod.long_name}; the item has "
                f"{', '.join(item.assets)}. Pick another preset or drop that item"
            )


def _geobox(
    items: list[pystac.Item],
    preset: CollectionPreset,
    mod: Modality,
    like: xr.DataArray | None,
    crs: Any,
    resolution: float | None,
    bbox: Sequence[float] | None,
) -> GeoBox:
    """The explicit load grid; pixel edges stay on the items' own grid where it is known."""
    from affine import Affine
    from odc.geo.geom import box as geo_box
    from pyproj import CRS

    if like is not None:
        return GeoBox(like.shape[-2:], like.rio.transform(), like.rio.crs.to_wkt())
    res = float(resolution or mod.resolution)
    grids = [_asset_grid(i, preset, mod, res) for i in items]
    if crs is None:
        crs = str(grids[0].crs) if grids[0] else None
    if crs is None:
        raise DataSourceError(
            f"STAC item {items[0].id}: no proj:code/proj:epsg; pass crs= and resolution= (or "
            "geobox=/like=) so the load grid is explicit"
        )
    target = CRS.from_user_input(crs)
    native = [g for g in grids if g and g.crs == target]
    ax, ay = (native[0].affine.c, native[0].affine.f) if native else (0.0, 0.0)
    if bbox is not None:
        left, bottom, right, top = geo_box(*bbox, crs="EPSG:4326").to_crs(crs).boundingbox
    elif native and len(native) == len(items):  # exact union of the items' footprints
        fp = [g.boundingbox.bbox for g in native]
        left, bottom = min(f[0] for f in fp), min(f[1] for f in fp)
        right, top = max(f[2] for f in fp), max(f[3] for f in fp)
    else:
        bounds = [geo_box(*i.bbox, crs="EPSG:4326").to_crs(crs).boundingbox for i in items]
        left, bottom = min(b.left for b in bounds), min(b.bottom for b in bounds)
        right, top = max(b.right for b in bounds), max(b.top for b in bounds)
    eps = 1e-6  # floating noise must not add a row or column of pixels
    left = ax + np.floor((left - ax) / res + eps) * res
    right = ax + np.ceil((right - ax) / res - eps) * res
    top = ay + np.ceil((top - ay) / res - eps) * res
    bottom = ay + np.floor((bottom - ay) / res + eps) * res
    shape = (round((top - bottom) / res), round((right - left) / res))
    return GeoBox(shape, Affine(res, 0.0, left, 0.0, -res, top), crs)


def _asset_grid(
    item: pystac.Item, preset: CollectionPreset, mod: Modality, res: float
) -> GeoBox | None:
    """The grid of the item's asset closest to ``res`` (projection extension), if stated."""
    from affine import Affine

    best = None
    for band in mod.band_names:
        asset = item.assets[preset.assets[band]]
        fields = {**item.properties, **asset.extra_fields}
        t, shape, crs = fields.get("proj:transform"), fields.get("proj:shape"), _item_crs(fields)
        if not (t and shape and crs):
            continue
        grid = GeoBox((int(shape[0]), int(shape[1])), Affine(*t[:6]), crs)
        if abs(float(t[0]) - res) < 1e-9:
            return grid
        best = best or grid
    return best


def _item_crs(fields: Mapping[str, Any]) -> str | None:
    if fields.get("proj:code"):
        return str(fields["proj:code"])
    if fields.get("proj:epsg"):
        return f"EPSG:{int(fields['proj:epsg'])}"
    return None


def _same_group(item: pystac.Item, when: np.datetime64, groupby: str) -> bool:
    if item.datetime is None:
        return False
    t = np.datetime64(item.datetime.replace(tzinfo=None), "ns")
    if groupby == "solar_day":
        return abs(t - when) < np.timedelta64(1, "D")
    return t == when


def _item_s2_offset(item: pystac.Item) -> int:
    """DN offset of a Sentinel-2 item, from the API's own flags first."""
    p = item.properties
    if p.get("earthsearch:boa_offset_applied"):  # Earth Search already removed it
        return 0
    tags: dict[str, Any] = {}
    baseline = p.get("s2:processing_baseline")
    product = p.get("s2:product_uri") or p.get("s2:product_id")
    if product is None and baseline:
        product = f"X_N{str(baseline).replace('.', '')}_"
    return s2_offset(product_id=product, tags=tags, acquired=item.datetime, source=item.id)


def geobox_for_cell(cell: str, crs: Any, resolution: float = 10.0) -> GeoBox:
    """The Major TOM product grid of a cell as a GeoBox, to load STAC data onto (``geobox=``)."""
    from geocopgen.sources.majortom_grid import product_grid

    return product_grid(cell, crs=crs, resolution=resolution)


__all__ = [
    "API_URLS",
    "PRESETS",
    "CollectionPreset",
    "StacSource",
    "geobox_for_cell",
]
