"""The zarr (v3) latent store: latent moments per modality (or per COP-GEN slot) plus a chip table.

Layout::

    store.zarr/                      attrs: format, kind, chip_size, modalities, codecs
      moments/<name>      float32 (N, 2z, h, w)   mean ‖ logvar, one chunk per chip
      chips/key           str     (N,)            "<place>|<row_off>|<col_off>", unique
      chips/place         str     (N,)            Major TOM cell id, tile name, ...
      chips/crs           str     (N,)            WKT or EPSG code of the chip
      chips/transform     float64 (N, 6)          affine of the chip's top-left pixel
      chips/window        int64   (N, 4)          row_off, col_off, height, width in its raster
      chips/datetime      str     (N,)
      chips/sources       str     (N,)            product ids / item ids / file names
      chips/valid         float32 (N, M)          valid-pixel fraction per modality
      chips/lonlat        float64 (N, 2)          chip centre (COP-GEN stores only)
      complete            bool    (N,)            set only after the chip's data is written

``kind`` is ``"modalities"`` (one array per geocopgen modality, every one on the same latent
grid: the 4-modality models) or ``"copgen"`` (one array per COP-GEN image slot, each at its own
latent size: 24 x 24 for the 10 m groups, 12 x 12 at 20 m, 4 x 4 at 60 m, 8 x 8 for the 30 m
DEM; a chip is the same 1920 m of ground in every slot, its window is on the 10 m scene grid and
``chip_size`` is 192). The names in ``modalities`` are then slot keys, and each slot's codec
identity carries the model folder it came from.

The chip table is written up front, when chips are planned; an encoding task then writes a
chip's moments and valid fractions and only then its ``complete`` flag. A killed run therefore
leaves chips either complete or not-yet-complete, never half-visible, and a resumed run encodes
exactly the incomplete ones. Chips are addressed by key, so appending places that are already
in the store adds nothing (no duplicates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from affine import Affine

from geocopgen.errors import ConfigError, DataSourceError
from geocopgen.modalities import get_modality
from geocopgen.raster.grid import GeoBox, rasterio_crs

FORMAT_VERSION = 1
#: What a store's arrays are named after (see the module docstring).
KINDS = ("modalities", "copgen")
_STR_COLUMNS = ("key", "place", "crs", "datetime", "sources")


@dataclass(frozen=True)
class ChipRecord:
    """One planned chip: where it is and where its pixels came from.

    ``crs`` (a CRS string) and ``transform`` (six affine coefficients) are the chip's grid as
    the store keeps it on disk; :meth:`for_grid` and :attr:`grid` convert from and to a GeoBox.
    """

    place: str
    row_off: int
    col_off: int
    height: int
    width: int
    crs: str
    transform: tuple[float, ...]
    datetime: str = ""
    sources: str = ""
    lonlat: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        return f"{self.place}|{self.row_off}|{self.col_off}"

    @classmethod
    def for_grid(
        cls,
        place: str,
        row_off: int,
        col_off: int,
        grid: GeoBox,
        *,
        datetime: str = "",
        sources: str = "",
        lonlat: tuple[float, float] | None = None,
    ) -> ChipRecord:
        """The record of a chip whose GeoBox is ``grid`` (a sub-grid of its place's grid)."""
        crs = rasterio_crs(grid).to_string()
        transform = tuple(grid.affine)[:6]
        return cls(
            place, row_off, col_off, grid.height, grid.width, crs, transform, datetime, sources,
            lonlat,
        )  # fmt: skip

    @property
    def grid(self) -> GeoBox:
        """The chip's GeoBox, from the stored CRS string and transform."""
        return GeoBox((self.height, self.width), Affine(*self.transform), self.crs)


def codec_attrs(
    modality: str, codec: Mapping[str, Any], kind: str = "modalities"
) -> dict[str, Any]:
    """The attrs that identify a modality's (or a COP-GEN slot's) codec and normalisation in a
    store (a slot's normalisation is fixed by its key: :mod:`geocopgen.copgen.units`)."""
    if kind == "copgen":
        from geocopgen.copgen.layout import slot

        s = slot(modality)
        return {
            "codec": dict(codec),
            "bands": list(s.bands),
            "resolution": s.resolution,
            "chip_px": s.chip_px,
        }
    mod = get_modality(modality)
    return {
        "codec": dict(codec),
        "bands": list(mod.band_names),
        "center": [b.center for b in mod.bands],
        "scale": [b.scale for b in mod.bands],
    }


class LatentStore:
    """A latent store on disk (any zarr v3 store path)."""

    def __init__(self, group: zarr.Group, path: str) -> None:
        self.group = group
        self.path = path

    # --- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> LatentStore:
        """Open an existing store (``mode='r'`` or ``'r+'``)."""
        try:
            group = zarr.open_group(str(path), mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise DataSourceError(f"{path}: no latent store here ({exc})") from exc
        if group.attrs.get("format") != FORMAT_VERSION:
            raise DataSourceError(
                f"{path}: not a geocopgen latent store of format {FORMAT_VERSION} "
                f"(format={group.attrs.get('format')!r})"
            )
        return cls(group, str(path))

    @classmethod
    def create_or_open(
        cls,
        path: str | Path,
        *,
        codecs: Mapping[str, Mapping[str, Any]],
        latent_shape: Mapping[str, tuple[int, int, int]],
        chip_size: int,
        kind: str = "modalities",
    ) -> LatentStore:
        """Open a store to add to, or create it; refuse one written with other codecs.

        ``codecs`` maps modality (or slot key, ``kind="copgen"``) → codec identity (name, hash,
        version, ...); ``latent_shape`` maps it → moments shape ``(2z, h, w)`` of one chip.
        """
        if kind not in KINDS:
            raise ConfigError(f"a latent store's kind is one of {KINDS}, not {kind!r}")
        mods = [_array_name(m, kind) for m in codecs]
        attrs = {m: codec_attrs(m, codecs[m], kind) for m in mods}
        if Path(str(path), "zarr.json").exists():
            store = cls.open(path, mode="r+")
            store._check_compatible(mods, attrs, chip_size, kind)
            return store
        group = zarr.open_group(str(path), mode="w")
        group.attrs.update(
            {
                "format": FORMAT_VERSION,
                "kind": kind,
                "chip_size": int(chip_size),
                "modalities": mods,
                "codecs": attrs,
            }
        )
        for m in mods:
            shape = tuple(int(v) for v in latent_shape[m])
            group.create_array(
                f"moments/{m}", shape=(0, *shape), chunks=(1, *shape), dtype="float32",
                fill_value=np.nan,
            )  # fmt: skip
        for name in _STR_COLUMNS:
            group.create_array(f"chips/{name}", shape=(0,), chunks=(4096,), dtype=str)
        group.create_array("chips/transform", shape=(0, 6), chunks=(4096, 6), dtype="float64")
        group.create_array("chips/window", shape=(0, 4), chunks=(4096, 4), dtype="int64")
        group.create_array(
            "chips/valid", shape=(0, len(mods)), chunks=(1, len(mods)), dtype="float32",
            fill_value=np.nan,
        )  # fmt: skip
        if kind == "copgen":
            group.create_array(
                "chips/lonlat", shape=(0, 2), chunks=(4096, 2), dtype="float64",
                fill_value=np.nan,
            )  # fmt: skip
        group.create_array("complete", shape=(0,), chunks=(1,), dtype="bool", fill_value=False)
        return cls(group, str(path))

    def _check_compatible(
        self, mods: Sequence[str], attrs: Mapping[str, Any], chip_size: int, kind: str
    ) -> None:
        have = self.group.attrs
        if (
            list(have["modalities"]) != list(mods)
            or int(have["chip_size"]) != int(chip_size)
            or self.kind != kind
        ):
            raise ConfigError(
                f"{self.path}: store holds {self.kind} {have['modalities']} at chip size "
                f"{have['chip_size']}, this run asks for {kind} {list(mods)} at {chip_size}; "
                "write to a new store path"
            )
        for m in mods:
            old, new = have["codecs"][m], _jsonable(attrs[m])
            if old != new:
                raise ConfigError(
                    f"{self.path}: {m} latents were written with codec {old['codec']} "
                    f"(normalisation {old['center']}/{old['scale']}), this run uses "
                    f"{new['codec']}; mixing them would corrupt the store. Write to a new store "
                    "path, or re-encode with the store's codec"
                )

    # --- facts --------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"modalities"`` or ``"copgen"`` (stores written before kinds existed: the first)."""
        return str(self.group.attrs.get("kind", "modalities"))

    @property
    def modalities(self) -> list[str]:
        """The arrays' names: modalities, or the slot keys of a COP-GEN store."""
        return list(self.group.attrs["modalities"])

    @property
    def chip_size(self) -> int:
        return int(self.group.attrs["chip_size"])

    @property
    def codecs(self) -> dict[str, Any]:
        return dict(self.group.attrs["codecs"])

    def __len__(self) -> int:
        return int(self.group["complete"].shape[0])

    @property
    def complete(self) -> np.ndarray:
        return np.asarray(self.group["complete"][:], dtype=bool)

    def keys(self) -> list[str]:
        return [str(k) for k in self.group["chips/key"][:]]

    def table(self) -> pd.DataFrame:
        """The chip table, one row per chip, with the ``complete`` flag and valid fractions."""
        g = self.group
        t = pd.DataFrame({n: [str(v) for v in g[f"chips/{n}"][:]] for n in _STR_COLUMNS})
        t["transform"] = list(map(tuple, g["chips/transform"][:]))
        window = g["chips/window"][:]
        for i, name in enumerate(("row_off", "col_off", "height", "width")):
            t[name] = window[:, i]
        valid = g["chips/valid"][:]
        for i, m in enumerate(self.modalities):
            t[f"valid_{m}"] = valid[:, i]
        if "chips/lonlat" in g:
            lonlat = g["chips/lonlat"][:]
            t["lon"], t["lat"] = lonlat[:, 0], lonlat[:, 1]
        t["complete"] = self.complete
        return t

    # --- writing ------------------------------------------------------------------------
    def add_chips(self, records: Sequence[ChipRecord]) -> np.ndarray:
        """Plan chips: append the new ones to the table; return every record's store index."""
        existing = {k: i for i, k in enumerate(self.keys())}
        new = [r for r in dict((r.key, r) for r in records).values() if r.key not in existing]
        n0, n = len(self), len(new)
        if n:
            g = self.group
            for name in list(g["moments"].array_keys()):
                arr = g[f"moments/{name}"]
                arr.resize((n0 + n, *arr.shape[1:]))
            for name in g["chips"].array_keys():
                arr = g[f"chips/{name}"]
                arr.resize((n0 + n, *arr.shape[1:]))
            g["complete"].resize((n0 + n,))
            sl = slice(n0, n0 + n)
            g["chips/key"][sl] = np.array([r.key for r in new], dtype=object)
            g["chips/place"][sl] = np.array([r.place for r in new], dtype=object)
            g["chips/crs"][sl] = np.array([r.crs for r in new], dtype=object)
            g["chips/datetime"][sl] = np.array([r.datetime for r in new], dtype=object)
            g["chips/sources"][sl] = np.array([r.sources for r in new], dtype=object)
            g["chips/transform"][sl] = np.array([r.transform[:6] for r in new], dtype=np.float64)
            g["chips/window"][sl] = np.array(
                [(r.row_off, r.col_off, r.height, r.width) for r in new], dtype=np.int64
            )
            if "chips/lonlat" in g:
                g["chips/lonlat"][sl] = np.array(
                    [r.lonlat or (np.nan, np.nan) for r in new], dtype=np.float64
                )
            existing.update({r.key: n0 + i for i, r in enumerate(new)})
        return np.array([existing[r.key] for r in records], dtype=np.int64)

    def write_chips(
        self, indices: Sequence[int], moments: Mapping[str, np.ndarray], valid: np.ndarray
    ) -> None:
        """Write a batch of chips (``moments[m]`` and ``valid`` stacked in ``indices`` order).

        Runs of consecutive indices go to zarr as one slice each, so zarr writes their chunks
        concurrently instead of one call per chip. All data of the batch is written before any
        of its ``complete`` flags, which is what makes a killed run safe to resume.
        """
        g = self.group
        runs = _consecutive_runs(indices)
        for m in self.modalities:
            data = np.asarray(moments[m], dtype=np.float32)
            for start, stop, lo in runs:
                g[f"moments/{m}"][start:stop] = data[lo : lo + stop - start]
        valid = np.asarray(valid, dtype=np.float32)
        for start, stop, lo in runs:
            g["chips/valid"][start:stop] = valid[lo : lo + stop - start]
        for start, stop, _ in runs:
            g["complete"][start:stop] = True

    # --- reading ------------------------------------------------------------------------
    def moments(self, modality: str, index: int | slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.group[f"moments/{_array_name(modality, self.kind)}"][index])


def _array_name(name: str, kind: str) -> str:
    """A modality's registry name, or a COP-GEN image slot's key (checked)."""
    if kind != "copgen":
        return get_modality(name).name
    from geocopgen.copgen.layout import slot

    if slot(name).kind != "image":
        raise ConfigError(f"{name} is a scalar slot: a latent store keeps image slots only")
    return name


def _consecutive_runs(indices: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, position in indices)`` of each run of consecutive store indices."""
    runs: list[tuple[int, int, int]] = []
    for pos, index in enumerate(int(i) for i in indices):
        if runs and runs[-1][1] == index:
            start, _, lo = runs[-1]
            runs[-1] = (start, index + 1, lo)
        else:
            runs.append((index, index + 1, pos))
    return runs


def _jsonable(value: Any) -> Any:
    """What a value looks like after a round trip through zarr's JSON attrs."""
    import json

    return json.loads(json.dumps(value))
