"""Gap filling: Sentinel-2 pixels under clouds or in nodata gaps, filled from the clear pixels
around them and from other modalities (Sentinel-1, a DEM), on the input's own grid and dtype.

1. **What is filled** is a mask on the input grid (:mod:`geocopgen.translation.fill_mask`): the
   input's nodata, its L2A scene classification, the model's cloud mask or a mask raster.
2. **Values for the masked pixels** come from the model or a baseline
   (:mod:`geocopgen.translation.fill_methods`). With the model, the clear part of the input is a
   condition: at every solver call the latent cells whose pixels are all clear are held to the
   encoded input, the rest is generated beside them on the same seamless canvases.
3. **The output** (:mod:`geocopgen.translation.fill_output`) keeps every clear pixel bit for bit
   and stores the filled ones as the input stores them, after matching them to their clear
   surroundings (the residual against the clear pixels, carried into the mask).

A latent cell is 8 pixels of its resolution group: 80 m for the 10 m bands, 160 m at 20 m and
480 m at 60 m. A cell is held to the input only if every one of its pixels is clear, so a thin
mask (a 20 m cloud edge) makes whole cells generated around it; the copy back of every clear
pixel and the matching keep that from showing (docs/gap-filling.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from geocopgen.errors import ConfigError, GeoCopGenWarning, InputError, warn
from geocopgen.io.readers import OpenedInput
from geocopgen.outputs import temporary_name
from geocopgen.translation import fill_methods, fill_output
from geocopgen.translation.fill_mask import FillMask

METHODS = ("model", "interpolate", "ridge")


@dataclass(frozen=True)
class FillOptions:
    """What to fill and how: ``mask`` (``"nodata"``, ``"scl"``, ``"model"`` or a mask raster's
    path), ``dilate`` (pixels the mask grows by), ``method`` (:data:`METHODS`) and ``feather``
    (how far into the mask the method is matched to its clear surroundings: ``None`` across the
    whole mask, ``N`` fading out over N pixels, 0 not at all;
    :func:`~geocopgen.translation.fill_output.matched`)."""

    mask: str | Path = "nodata"
    dilate: int = 0
    method: str = "model"
    feather: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.feather is not None and self.feather < 0:
            raise ConfigError(f"feather must be 0 or more pixels, got {self.feather}")
        if self.dilate < 0:
            raise ConfigError(f"dilate must be 0 or more pixels, got {self.dilate}")

    def tags(self) -> dict[str, Any]:
        return {"FILL_METHOD": self.method, "FILL_DILATE_PX": self.dilate,
                "FILL_FEATHER_PX": "all" if self.feather is None else self.feather}  # fmt: skip


def check_fill(mask: FillMask, array: xr.DataArray) -> bool:
    """Whether there is anything to fill: ``False`` (with a warning) when nothing is masked;
    refused with one line when nothing clear is left to keep."""
    source = array.attrs.get("source", "the input")
    if not mask.fill.any():
        warn(f"{source}: the mask ({mask.source}) marks no pixel; nothing to fill, the output "
             "is the input unchanged", GeoCopGenWarning)  # fmt: skip
        return False
    if mask.not_kept.all():
        raise InputError(
            f"{source}: every pixel is to be filled ({mask.source}), so nothing clear is left to "
            "keep; translate from the other modalities instead (geocopgen translate ... --to "
            f"{array.attrs['modality']})"
        )
    return True


def run(
    opened: OpenedInput,
    found: FillMask,
    request: FillOptions,
    conditions: Mapping[str, OpenedInput],
    sampling: Any,
    reading: Any,
    writing: Any,
    *,
    model: Any = None,
    model_name: str = "",
    tags: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Fill the input where ``found`` says by ``request.method`` and compose the output, into
    ``writing.path`` (read back lazily) or memory."""
    array = opened.array
    stored = fill_output.Stored.of(opened)
    tags = {**request.tags(), "FILL_MASK": found.source,
            "FILLED_FRACTION": f"{found.fraction:.6f}", **(tags or {})}  # fmt: skip
    std, tmp = None, None
    try:
        if not check_fill(found, array):
            values: fill_output.Values = array
        elif request.method == "model":
            if writing.path is not None:
                tmp = temporary_name(writing.path, ".model.tif")
            made = fill_methods.model_values(
                model, opened, conditions, found.not_kept, sampling, when=reading.date,
                dn_policy=reading.s2_dn, path=tmp, tags={"MODEL": model_name},
            )  # fmt: skip
            values, std = made.mean, made.std
            tags = {**made.tags, **tags}
        elif request.method == "interpolate":
            values = fill_methods.interpolated(array, found.fill)
        else:
            values = fill_methods.ridge_filled(array, conditions, found.fill)
        fill = fill_output.Composition(stored, values, found, request.feather, std)
        if writing.path is None:
            return fill_output.in_memory(fill, tags=tags)
        paths = fill_output.write(fill, writing.path, tags=tags, overwrite=writing.overwrite)
        return fill_output.read(paths, fill)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


__all__ = ["METHODS", "FillOptions", "check_fill", "run"]
