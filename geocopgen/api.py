"""The Python API: translate, generate, encode and decode rasters; load models.

Every function takes inputs as paths (a GeoTIFF or a one-file-per-band folder), open rasterio
datasets, or xarray objects (a georeferenced ``DataArray``, or a ``Dataset`` whose variables are
modalities), and returns a new georeferenced ``xarray.DataArray`` (dims ``band, y, x``, CRS in the
``spatial_ref`` coordinate, NaN nodata, provenance in ``attrs``). With ``output=`` the result is
also streamed to a GeoTIFF (COG with ``cog=True``) and the returned array reads lazily from it;
without, it is computed into memory.

Grids: the model works on a 10 m grid (the *working* grid: the first input's own grid when it is
projected and at 10 m, else that grid resampled to 10 m, or a UTM grid for geographic inputs).
``grid="input"`` (default) writes the output on the first input's own grid, ``"model"`` on the
working grid, ``"native"`` at the target modality's native resolution (DEM: 30 m); a
:class:`~odc.geo.geobox.GeoBox` names any grid. Conditions on other grids or CRSs are
resampled onto the working grid, with a :class:`~geocopgen.errors.ResamplingWarning` each.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geocopgen.errors import (
    CheckpointError,
    ConfigError,
    GeoCopGenError,
    GridError,
    InputError,
    ModalityError,
    ResamplingWarning,
    warn,
)
from geocopgen.io import OpenedInput, align, model_grid, open_input, utm_grid
from geocopgen.io.raster_source import is_remote, open_dataset
from geocopgen.modalities import get_modality
from geocopgen.options import ReadOptions, TranslateOptions, WriteOptions, split_options
from geocopgen.outputs import removed_on_failure
from geocopgen.raster.grid import (
    GeoBox,
    at_resolution,
    describe,
    grid_of,
    make_grid,
    pixel_size,
    rasterio_crs,
    validate_grid,
)

if TYPE_CHECKING:  # torch and the models load with the first model, not with this module
    import torch

    from geocopgen.copgen.model import CopgenModel
    from geocopgen.models.pipeline import CopGenPipeline

#: a path, a rasterio dataset, an xarray DataArray/Dataset, or an input open_inputs opened
InputLike = str | os.PathLike | Any
GridLike = Literal["input", "model", "native"] | GeoBox
ModelLike = "str | os.PathLike | CopGenPipeline | None"

__all__ = [
    "Capabilities",
    "capabilities",
    "check_model",
    "decode",
    "encode",
    "fill",
    "generate",
    "has_valid_pixels",
    "load_model",
    "open_inputs",
    "resolve_device",
    "translate",
]


# --- models -----------------------------------------------------------------------------------
def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, else Apple MPS, else CPU; or the device named."""
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {device!r} is not a torch device; use auto, cpu, cuda or mps"
        ) from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available.get(dev.type, False):
        raise ConfigError(f"device {device!r} is not available on this machine; use auto or cpu")
    return dev


_MODELS: dict[tuple[str, str], CopGenPipeline] = {}


def load_model(
    model: ModelLike = None, *, device: str | torch.device | None = None
) -> CopGenPipeline | CopgenModel:
    """A :class:`~geocopgen.models.CopGenPipeline` (or a COP-GEN model folder's
    :class:`~geocopgen.copgen.model.CopgenModel`) on ``device``.

    ``model``: ``None`` or ``"default"`` (the bundled model), a pipeline folder, a hub id when
    online, or a pipeline object (moved to ``device`` if one is given). Loaded folders are
    cached per (folder, device), so repeated calls in a notebook cost nothing. torch and the
    model code are imported here, on first use, so that a bad input fails before they load.
    """
    from geocopgen.copgen.convert import load_copgen
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.models.pipeline import CopGenPipeline
    from geocopgen.weights import resolve_model

    if isinstance(model, (CopGenPipeline, CopgenModel)):
        return model.to(resolve_device(device)) if device is not None else model
    path = resolve_model("default" if model is None else model)
    dev = resolve_device(device)
    key = (str(Path(path).resolve()) if Path(path).exists() else str(path), str(dev))
    if key not in _MODELS:
        if len(_MODELS) >= 2:
            _MODELS.pop(next(iter(_MODELS)))
        loaders = {"CopgenModel": load_copgen, "CopGenPipeline": CopGenPipeline.from_pretrained}
        _MODELS[key] = loaders[model_class(path, tuple(loaders))](path).to(dev)
    return _MODELS[key]


def model_class(path: str | os.PathLike, known: Sequence[str]) -> str:
    """The class a model folder's ``pipeline.json`` names (``_class_name``, as diffusers picks a
    pipeline class from ``model_index.json``; a folder from before that key: its ``kind``); a hub
    id: the published COP-GEN's is a ``CopgenModel``, any other a ``CopGenPipeline``."""
    from geocopgen.copgen.model import HUB_BACKBONE_REPO, KIND
    from geocopgen.models.checkpoints import read_config
    from geocopgen.models.pipeline import PIPELINE_CONFIG

    folder = Path(path).expanduser()
    if not folder.exists():
        return "CopgenModel" if str(path) == HUB_BACKBONE_REPO else "CopGenPipeline"
    if not folder.is_dir():
        return "CopGenPipeline"  # its loader says what a model folder is
    config = read_config(folder / PIPELINE_CONFIG)
    name = config.get("_class_name") or (
        "CopgenModel" if config.get("kind") == KIND else "CopGenPipeline"
    )
    if name not in known:
        raise CheckpointError(
            f"{folder}: {PIPELINE_CONFIG} names the class {name!r}, which this geocopgen does not "
            f"load (it loads {', '.join(known)}); a newer geocopgen may"
        )
    return name


def check_model(model: ModelLike, *, bundled: str = "model='default'") -> None:
    """Refuse, before anything is read or created, a model that is neither ``"default"``, a
    model object, an existing folder nor a hub id (``owner/name``), saying how to make the
    folder: the usual slip is naming a COP-GEN folder before converting into it. ``bundled``
    is how the caller's surface names the bundled model (the CLI: ``--model default``)."""
    if model is None or not isinstance(model, (str, os.PathLike)) or str(model) == "default":
        return
    if Path(model).expanduser().exists() or _HUB_ID.fullmatch(str(model)):
        return
    raise CheckpointError(
        f"{model}: no such model folder. To make it from the published COP-GEN run "
        f"`geocopgen convert copgen --hub -o {model}` (or `geocopgen convert copgen "
        f"BACKBONE.pth VAE_FOLDER -o {model}` from downloaded files); or use the bundled model "
        f"({bundled})"
    )


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def _canvas_model(model: ModelLike, device: str | torch.device | None) -> CopGenPipeline:
    """A model whose autoencoders share one latent canvas (what encode/decode work on); a
    COP-GEN model, one canvas per resolution group, is refused in one line."""
    from geocopgen.models.pipeline import CopGenPipeline

    pipeline = load_model(model, device=device)
    if not isinstance(pipeline, CopGenPipeline):
        raise ModalityError(
            f"{_model_name(model)} is a COP-GEN model: its latents live on one canvas per "
            "slot; decode the dict of per-slot latents that encode() returned with it"
        )
    return pipeline


def _model_name(model: ModelLike) -> str:
    if model is None or isinstance(model, (str, os.PathLike)):
        return "default (bundled)" if model in (None, "default") else str(model)
    return f"a {type(model).__name__} object"


# --- inputs -----------------------------------------------------------------------------------
def _open_one(
    obj: InputLike,
    modality: str | None = None,
    reading: ReadOptions | None = None,
    *,
    nodata: float | None = None,
) -> OpenedInput:
    """One input opened once (lazy), read with ``reading``'s S2 offset and S1 scale and the
    nodata override ``nodata``: a file, folder, URL or rasterio dataset with the files it reads;
    a DataArray (sliced, computed or as opened) without, so it is resampled from the array
    wherever another grid is needed."""
    if isinstance(obj, OpenedInput):
        return obj
    if isinstance(obj, xr.Dataset):
        raise InputError(
            "a Dataset holds several modalities; pass it as the source (each variable becomes a "
            "condition) or pass its variables, e.g. ds['s2l2a']"
        )
    reading = reading or ReadOptions()
    kwargs: dict[str, Any] = {"offset": reading.s2_offset, "s1_scale": reading.s1_scale}
    if not isinstance(obj, xr.DataArray):
        kwargs["lulc_scheme"] = reading.lulc_scheme
    if isinstance(obj, xr.DataArray):
        if _is_modality_array(obj, modality):  # decoded already (open_raster): as it was read
            return OpenedInput.recovered(obj)
        return open_input(obj, modality, **kwargs)
    if isinstance(obj, rasterio.io.DatasetReaderBase):
        if Path(obj.name).exists():
            return open_input(obj.name, modality, nodata=nodata, **kwargs)
        import rioxarray

        return open_input(rioxarray.open_rasterio(obj, chunks=True), modality, **kwargs)
    return open_input(obj, modality, nodata=nodata, **kwargs)  # a str: a URL stays one


def _is_modality_array(obj: xr.DataArray, modality: str | None) -> bool:
    """True for a geocopgen ModalityArray (the data contract) of ``modality`` (if given)."""
    name = obj.attrs.get("modality")
    if not name or "source" not in obj.attrs or obj.dims != ("band", "y", "x"):
        return False
    try:
        m = get_modality(name)
    except GeoCopGenError:
        return False
    same = modality is None or get_modality(modality).name == m.name
    bands = [str(b) for b in obj["band"].values] if "band" in obj.coords else []
    return same and obj.dtype == np.float32 and tuple(bands) == m.band_names


def open_inputs(
    source: InputLike | None = None,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    *,
    modality: str | None = None,
    reading: ReadOptions | None = None,
) -> dict[str, OpenedInput]:
    """``source`` (+ ``cond``) opened once, keyed by modality, ``source`` first: each an
    :class:`~geocopgen.io.OpenedInput` (``.array`` is its ModalityArray), which translate and
    generate also take as inputs.

    ``cond`` is a mapping modality → input (the modality is then stated, not detected), or one
    input or a sequence of inputs (detected). A ``Dataset`` source contributes every variable.
    ``reading`` applies its S2 offset and S1 scale to every input and its nodata override to
    ``source`` alone (a condition has its own nodata). A file geocopgen opens is read from its
    files onto each grid a model needs (a 20 m band onto a 20 m group as stored); a DataArray
    given here (sliced, computed or as :func:`~geocopgen.io.open_raster` made it) is resampled
    from the array.
    """
    reading = reading or ReadOptions()
    items: list[tuple[str | None, InputLike, float | None]] = []
    if isinstance(source, xr.Dataset):
        items += [(None, source[v], None) for v in source.data_vars]
    elif source is not None:
        items.append((modality, source, reading.nodata))
    if isinstance(cond, Mapping):
        items += [(get_modality(k).name, v, None) for k, v in cond.items()]
    elif isinstance(cond, (list, tuple)):
        items += [(None, v, None) for v in cond]
    elif cond is not None:
        items.append((None, cond, None))
    out: dict[str, OpenedInput] = {}
    for stated, obj, nodata in items:
        opened = _open_one(obj, stated, reading, nodata=nodata)
        name = opened.array.attrs["modality"]
        if name in out:
            first = out[name].array.attrs.get("source")
            raise InputError(
                f"two inputs are {get_modality(name).long_name} ({first} "
                f"and {opened.array.attrs.get('source')}); give each modality once"
            )
        out[name] = opened
    return out


def _work_and_out_grids(
    reference: GeoBox, target: str, grid: GridLike
) -> tuple[GeoBox, GeoBox | None]:
    """The 10 m working grid for ``reference`` and the output grid (``None``: the working one)."""
    if isinstance(grid, GeoBox):
        validate_grid(grid, "the requested output grid")
        reference = grid
    elif grid not in ("input", "model", "native"):
        raise ConfigError(f"grid must be 'input', 'model', 'native' or a GeoBox, got {grid!r}")
    work = model_grid(reference, target)
    if grid == "model":
        return work, None
    if grid == "native":
        res = get_modality(target).native_resolution
        return work, (None if np.isclose(res, pixel_size(work)[0]) else at_resolution(work, res))
    if reference.crs != work.crs:
        _warn_not_projected(reference, work)
        return work, None
    return work, (None if reference == work else reference)


def _warn_not_projected(reference: GeoBox, work: GeoBox) -> None:
    """A geographic input grid: the output goes on the projected working grid instead."""
    warn(
        f"the input grid is in {rasterio_crs(reference)}, which is not projected; the output "
        f"is written on the {rasterio_crs(work)} grid the model works on ({describe(work)})",
        ResamplingWarning,
    )


# --- translate / generate -----------------------------------------------------------------------
def _translate(
    target: str,
    conditions: Mapping[str, OpenedInput],
    place: GeoBox,
    *,
    reading: ReadOptions,
    writing: WriteOptions,
    sampling: TranslateOptions,
    model: ModelLike,
    device: str | torch.device | None,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """The one path of :func:`translate` and :func:`generate`: check the output, load the
    model, plan once, run into the file or into memory, and return the result; output folders
    it created are removed again if it fails."""
    from geocopgen.models.pipeline import CopGenPipeline as CanvasModel
    from geocopgen.translation import CanvasTranslator, result_array, run_plan

    sources = [c.source for c in conditions.values()]
    check_model(model)  # a missing folder: nothing created
    created = writing.prepare(inputs=sources)  # before the model loads: a refusal costs nothing
    with removed_on_failure(created):
        pipeline = load_model(model, device=device)  # everything a user can get wrong is checked
        if not isinstance(pipeline, CanvasModel):
            return _translate_copgen(
                pipeline, target, conditions, place, reading, sampling, writing, _model_name(model)
            )
        target = get_modality(target).name  # a COP-GEN-only modality is not one of this model's
        if sampling.steps is not None:  # a COP-GEN model's preset checks its own
            from geocopgen.copgen.sampler import check_steps

            check_steps(sampling.steps)
        work, out_grid = _work_and_out_grids(place, target, writing.grid or "input")
        translator = CanvasTranslator(pipeline, target, sampling)
        plan = translator.plan(work, conditions, out_grid=out_grid, model=_model_name(model))
        _, writer = run_plan(translator, plan, writing)
        return result_array(plan, writer)


def _target_name(to: str) -> str:
    """A registry modality (aliases allowed), or a modality or slot only COP-GEN models make
    (``lulc``, ``cloud_mask``, a slot key such as ``S2L2A_B02_B03_B04_B08``)."""
    from geocopgen.copgen.layout import MODALITY_SLOTS, SLOT_NAMES

    try:
        return get_modality(to).name
    except ModalityError:
        if to.lower() in MODALITY_SLOTS or to in SLOT_NAMES:
            return to.lower() if to.lower() in MODALITY_SLOTS else to
        raise


def _translate_copgen(
    model: CopgenModel,
    to: str,
    conditions: Mapping[str, OpenedInput],
    place: GeoBox,
    reading: ReadOptions,
    sampling: TranslateOptions,
    writing: WriteOptions,
    model_name: str,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """:func:`translate` with a COP-GEN model: one canvas per resolution group, each generated
    group written on its native grid, or all of them resampled onto one grid (the model's
    ``default_grid`` unless ``grid=`` says; see :mod:`geocopgen.translation.grouped`)."""
    from geocopgen.translation.grouped import plan_grouped
    from geocopgen.translation.grouped_output import run_grouped_into

    grid = writing.grid or model.default_grid
    if grid not in ("native", "model", "input"):
        raise ConfigError(
            "a COP-GEN model writes each resolution group on its native grid (grid='native'), "
            "or every group resampled onto the input grid (grid='input') or the 10 m working "
            f"grid (grid='model'); got {writing.grid!r}"
        )
    scene = model_grid(place, None)
    _refuse_too_small(model, conditions)
    _warn_off_the_scene(conditions, place, scene)
    overlap_m = None if sampling.overlap is None else sampling.overlap * pixel_size(scene)[0]
    plan = plan_grouped(
        model,
        to,
        scene,
        conditions,
        sampling,
        when=reading.date,
        dn_policy=reading.s2_dn,
        overlap_m=overlap_m,
        tags={"MODEL": model_name},
    )
    out_grid = {"input": place, "model": scene, "native": None}[grid]
    if grid == "input" and place.crs != scene.crs:
        _warn_not_projected(place, scene)
        out_grid = scene
    return run_grouped_into(model, plan, writing, out_grid=out_grid)


def _warn_off_the_scene(
    conditions: Mapping[str, OpenedInput], place: GeoBox, scene: GeoBox
) -> None:
    """Say which conditions are reprojected: those in another CRS, or whose pixels do not line
    up with the scene's (the first input's) lattice, as the 4-modality path's ``align`` does."""
    for opened in conditions.values():
        array = opened.array
        grid = grid_of(array)
        if grid == place or _lines_up(grid, scene):
            continue
        warn(
            f"{array.attrs.get('source', 'a condition')}: on another grid than the scene "
            f"({_where(grid)}; the scene: {_where(scene)}); reprojected onto each resolution "
            "group's grid (bilinear, or average where coarser)",
            ResamplingWarning,
        )


def _where(grid: GeoBox) -> str:
    """A grid's size, pixel size, CRS and upper-left corner, for messages."""
    return f"{describe(grid)}, upper left ({grid.affine.c:.10g}, {grid.affine.f:.10g})"


def _lines_up(grid: GeoBox, scene: GeoBox) -> bool:
    """Same CRS, a pixel size that is a whole multiple of the scene's, and pixel corners on the
    scene's lattice: such a raster is read onto the group grids without interpolating."""
    if rasterio_crs(grid) != rasterio_crs(scene):
        return False
    a, s = grid.affine, scene.affine
    steps = [a.a / s.a, a.e / s.e, (a.c - s.c) / s.a, (a.f - s.f) / s.e]
    return steps[0] >= 1 and bool(np.allclose(steps, np.round(steps), atol=1e-3))


def _refuse_too_small(model: CopgenModel, conditions: Mapping[str, OpenedInput]) -> None:
    """Refuse a condition smaller than one pixel of its coarsest resolution group: that group
    would hold no pixel wholly inside it, and the run would end in "no valid data" instead."""
    from geocopgen.copgen.layout import MODALITY_SLOTS, slot

    for name, opened in conditions.items():
        array = opened.array
        keys = [k for k in MODALITY_SLOTS.get(name, ()) if k in model.encodable]
        if not keys:
            continue  # plan_grouped names what the model cannot encode
        coarsest = max(keys, key=lambda k: slot(k).resolution or 0.0)
        res = slot(coarsest).resolution or 0.0
        grid = grid_of(array)
        work = model_grid(grid)  # metres, also for a geographic input
        if min(work.width, work.height) * pixel_size(work)[0] + 1e-6 >= res:
            continue
        step = pixel_size(grid)[0]
        need = int(np.ceil(res / step - 1e-6)) if not rasterio_crs(grid).is_geographic else None
        at_least = f"at least {need}x{need} px" if need else f"at least {res:g} m a side"
        raise InputError(
            f"{array.attrs.get('source', name)}: too small ({grid.width}x{grid.height} px); "
            f"translating {get_modality(name).long_name} needs {at_least} (one {res:g} m pixel "
            f"of its {coarsest} group). Give a larger area."
        )


def translate(
    source: InputLike | None,
    to: str,
    *,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    modality: str | None = None,
    output: str | os.PathLike | None = None,
    model: ModelLike = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """Translate ``source`` (and the extra conditions ``cond``) into modality ``to``.

    ``source``: a path, rasterio dataset, DataArray or Dataset, or an input :func:`open_inputs`
    opened (``None`` if ``cond`` holds every input); ``modality`` states the source's modality
    (detected when omitted). A file is read from its files onto each grid the model needs; a
    DataArray (sliced, computed or as opened) is resampled from the array. Without ``output``
    the result is computed in memory; with it, it is streamed to that GeoTIFF and the returned
    array reads it lazily.

    ``options`` (keywords; or ready values ``reading=``, ``sampling=``, ``writing=``):

    * reading (:class:`~geocopgen.options.ReadOptions`): ``s2_offset`` (0 or -1000; default
      decided from metadata), ``s1_scale`` (``"auto"``, ``"db"``, ``"linear"``), ``nodata``
      (the source's nodata override);
    * sampling (:class:`~geocopgen.options.TranslateOptions`): ``steps`` (model default),
      ``samples`` (> 1 returns the per-pixel mean and standard deviation as bands ``<band>`` and
      ``<band>_std``), ``seed`` (noise is seeded per position), ``overlap`` (chip overlap in px,
      default 64), ``seamless`` (``False`` denoises chips independently, for comparison only),
      ``batch_size``, ``reduce``, ``progress``;
    * writing (:class:`~geocopgen.options.WriteOptions`): ``grid`` (``"input"``, ``"model"``,
      ``"native"`` or a grid), ``cog``, ``overwrite`` (default ``False``: an existing output is
      refused).
    """
    reading, sampling, writing = split_options(options, writing={"path": output})
    conditions = open_inputs(source, cond, modality=modality, reading=reading)
    if not conditions:
        raise InputError("translate needs at least one input; use generate() for none")
    target = _target_name(to)
    place = grid_of(next(iter(conditions.values())).array)
    return _translate(
        target,
        conditions,
        place,
        reading=reading,
        writing=writing,
        sampling=sampling,
        model=model,
        device=device,
    )


def grid_for(
    *,
    cell: str | None = None,
    bbox: Sequence[float] | None = None,
    like: InputLike | GeoBox | None = None,
    resolution: float = 10.0,
) -> GeoBox:
    """A grid from exactly one description: a Major TOM ``cell`` (its 1068 px product grid in
    the cell's UTM zone), a lon/lat ``bbox`` (west, south, east, north; a covering UTM grid) or
    ``like`` (an input's grid, or a GeoBox)."""
    given = [k for k, v in {"cell": cell, "bbox": bbox, "like": like}.items() if v is not None]
    if len(given) != 1:
        raise ConfigError(
            f"give exactly one of cell, bbox or like to place the output (got {given or 'none'})"
        )
    if cell is not None:
        from geocopgen.sources.majortom_grid import product_grid

        return product_grid(cell, resolution=resolution)
    if bbox is not None:
        problem = bbox_problem(bbox)
        if problem:
            raise GridError(f"bbox {tuple(bbox)}: {problem}")
        west, south, east, north = (float(v) for v in bbox)
        extent = Affine(east - west, 0, west, 0, south - north, north)
        return utm_grid(GeoBox((1, 1), extent, CRS.from_epsg(4326)), resolution)
    return _grid_of_any(like)


def bbox_problem(bbox: Sequence[float]) -> str | None:
    """What is wrong with a (west, south, east, north) box in degrees, or ``None``: a value out
    of range first (200 is no longitude, whatever the order), then the order."""
    if len(bbox) != 4:
        return f"give 4 numbers (west, south, east, north), not {len(bbox)}"
    west, south, east, north = (float(v) for v in bbox)
    for name, value, limit in (
        ("longitude", west, 180), ("latitude", south, 90),
        ("longitude", east, 180), ("latitude", north, 90),
    ):  # fmt: skip
        if not -limit <= value <= limit:
            return f"{name} {value:g} is outside [{-limit}, {limit}] degrees"
    if not west < east:
        return f"west {west:g} is not less than east {east:g}; give west,south,east,north"
    if not south < north:
        return f"south {south:g} is not less than north {north:g}; give west,south,east,north"
    return None


def _grid_of_any(like: InputLike | GeoBox) -> GeoBox:
    """The grid of any raster (no modality needed): a grid, an xarray object, a dataset, a file
    or a band folder."""
    if isinstance(like, GeoBox):
        return like
    if isinstance(like, (xr.DataArray, xr.Dataset)):
        return grid_of(like, source=str(like.attrs.get("source", "xarray input")))
    if isinstance(like, rasterio.io.DatasetReaderBase):
        return grid_of(like)
    location = like if is_remote(like) else str(Path(like))
    if Path(location).is_dir():
        return grid_of(_open_one(location).array)
    with open_dataset(location) as src:
        return grid_of(src, source=location)


def generate(
    to: str,
    *,
    cell: str | None = None,
    bbox: Sequence[float] | None = None,
    like: InputLike | GeoBox | None = None,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    output: str | os.PathLike | None = None,
    model: ModelLike = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """Generate modality ``to`` on a georeferenced grid: a Major TOM ``cell``, a lon/lat
    ``bbox`` or the grid of ``like``; unconditionally, or conditioned on ``cond`` (resampled onto
    that grid). Without a place, the first condition's grid is used. ``grid`` is ``"model"``
    (default) or ``"native"`` (a DEM at 30 m; a COP-GEN model's Sentinel-2 target then comes as
    one array per resolution group, a dict); other options as in :func:`translate`.
    """
    reading, sampling, writing = split_options(options, writing={"path": output, "grid": "model"})
    if writing.grid not in ("model", "native"):
        raise ConfigError(f"generate writes on the 'model' or 'native' grid, got {writing.grid!r}")
    conditions = open_inputs(None, cond, reading=reading)
    target = _target_name(to)
    if cell is None and bbox is None and like is None:
        if not conditions:
            raise ConfigError("generate needs a place: cell=, bbox= or like= (or conditions)")
        place = grid_of(next(iter(conditions.values())).array)
    else:
        place = grid_for(cell=cell, bbox=bbox, like=like)
    return _translate(
        target,
        conditions,
        place,
        reading=reading,
        writing=writing,
        sampling=sampling,
        model=model,
        device=device,
    )


# --- encode / decode ----------------------------------------------------------------------------
def encode(
    source: InputLike,
    *,
    modality: str | None = None,
    model: ModelLike = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
    **reading: Any,
) -> xr.DataArray | dict[str, xr.DataArray]:
    """The scene's latents ``(latent, y, x)`` on the latent grid (8 x the pixel size, same CRS
    and origin): chip encodings (posterior means) blended with raised-cosine weights. This is the
    translator's latent canvas, so it covers at least one chip (256 px): a smaller raster's
    latents extend past its edge over its reflection padding. Cells that no chip with valid
    pixels covers are NaN. ``attrs`` keep what :func:`decode` needs (the pixel grid's size).
    A COP-GEN model gives one such array per slot of the modality, each on its group's latent
    canvas over the 10 m working grid (:mod:`geocopgen.translation.grouped_latents`).
    ``reading``: ``s2_offset``, ``s1_scale``, ``nodata`` as in :func:`translate`."""
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.translation import encode_canvas, layout_for
    from geocopgen.translation.grouped_latents import latent_array
    from geocopgen.translation.plan import check_codec

    try:
        options = ReadOptions(**reading)
    except TypeError:
        raise ConfigError(
            f"encode takes the reading options s2_offset, s1_scale, nodata; got {sorted(reading)}"
        ) from None
    opened = _open_one(source, modality, options, nodata=options.nodata)
    array = opened.array
    name = array.attrs["modality"]
    loaded = load_model(model, device=device)
    grid = grid_of(array)
    if isinstance(loaded, CopgenModel):
        from geocopgen.translation.grouped_latents import encode_groups

        scene = model_grid(grid, None)
        overlap_m = None if overlap is None else overlap * pixel_size(scene)[0]
        return encode_groups(
            loaded, opened, scene, overlap_m=overlap_m, batch_size=batch_size,
            progress=progress, model_name=_model_name(model),
        )  # fmt: skip
    work = model_grid(grid, name)
    if work != grid:
        array = align([opened], like=work)[0]
    layout = layout_for(loaded, work, [name], overlap)
    latents, has_data, _ = encode_canvas(
        loaded, array, layout, batch_size=batch_size, progress=progress
    )
    attrs = {
        "modality": name,
        "source": str(array.attrs.get("source", "")),
        "model": _model_name(model),
        "downsampling": layout.factor,
        "pixel_width": work.width,
        "pixel_height": work.height,
        "scaling_factor": float(check_codec(loaded, name).config.scaling_factor),
    }
    return latent_array(latents[0], layout, has_data, work.crs, f"{name}_latents", attrs)


def decode(
    latents: xr.DataArray | Mapping[str, xr.DataArray],
    *,
    model: ModelLike = None,
    output: str | os.PathLike | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.DataArray:
    """Latents from :func:`encode` back to a ModalityArray on the pixel grid they came from,
    decoded chip by chip and blended like a translation (NaN where the latents are NaN); in
    memory, or streamed to ``output``. A COP-GEN model's per-slot latents (the dict
    :func:`encode` returns) decode group by group, each resampled onto that grid."""
    import torch

    from geocopgen.domain import DomainGuard
    from geocopgen.raster.mosaic import MosaicWriter
    from geocopgen.translation import decode_canvas, layout_for
    from geocopgen.translation.output import mosaic_array

    if isinstance(latents, Mapping):
        from geocopgen.copgen.model import CopgenModel
        from geocopgen.translation.grouped_latents import decode_groups

        WriteOptions(path=output, overwrite=overwrite).prepare()
        loaded = load_model(model, device=device)
        if not isinstance(loaded, CopgenModel):
            raise InputError(
                f"{_model_name(model)} is a 4-modality model; per-slot latents decode with the "
                "COP-GEN model that encoded them"
            )
        return decode_groups(loaded, latents, output=output, overwrite=overwrite,
                             progress=progress)  # fmt: skip
    name = latents.attrs.get("modality")
    if not name or "downsampling" not in latents.attrs:
        raise InputError(
            "decode() needs latents made by encode() (attrs 'modality' and 'downsampling')"
        )
    writing = WriteOptions(path=output, overwrite=overwrite)
    writing.prepare()
    pipeline = _canvas_model(model, device)
    f = int(latents.attrs["downsampling"])
    grid = make_grid(
        latents.rio.crs,
        latents.rio.transform(recalc=True) @ Affine.scale(1 / f),
        int(latents.attrs.get("pixel_width", latents.sizes["x"] * f)),
        int(latents.attrs.get("pixel_height", latents.sizes["y"] * f)),
    )
    layout = layout_for(pipeline, grid, [name], overlap)
    values = np.asarray(latents.values, dtype=np.float32)
    invalid = np.isnan(values).any(axis=0)
    h, w = layout.shape
    canvas = torch.nn.functional.pad(
        torch.from_numpy(np.nan_to_num(values))[None],
        (0, w - values.shape[2], 0, h - values.shape[1]),
        mode="replicate",
    ).to(next(pipeline.backbone.parameters()).device)
    tags = {"OPERATION": "decode", "MODEL": _model_name(model)}
    bands = get_modality(name).band_names
    guard = DomainGuard(name, layout.pixel_chips)
    chips = decode_canvas(pipeline, name, canvas, layout, progress=progress, guard=guard)
    with MosaicWriter(
        writing.path,
        grid,
        bands,
        chips=layout.pixel_chips,
        modality=name,
        tags=tags,
        overwrite=writing.overwrite,
    ) as writer:
        for chip, image in chips:
            rows, cols = (np.arange(s.start, s.stop) // f for s in chip.slices)
            image[:, invalid[np.ix_(rows, cols)]] = np.nan
            writer.add(chip, image)
        guard.report(writer)
    return mosaic_array(writer, grid, name, {k.lower(): v for k, v in tags.items()})


# --- what a model can do with an input ---------------------------------------------------------
def fill(
    source: InputLike,
    *,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    mask: str | os.PathLike = "nodata",
    dilate: int = 0,
    method: str = "model",
    feather: int | None = None,
    modality: str | None = None,
    output: str | os.PathLike | None = None,
    model: ModelLike = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> xr.Dataset:
    """Fill the Sentinel-2 ``source`` where ``mask`` says: under clouds, in nodata gaps.

    ``mask``: ``"nodata"`` (the input's own nodata, the default), ``"scl"`` (its L2A scene
    classification: cloud shadow, medium and high probability cloud, thin cirrus), ``"model"``
    (the cloud mask a COP-GEN-layout model generates from it) or a mask raster's path (non-zero
    = fill; any grid and CRS, reprojected by nearest neighbour), grown by ``dilate`` pixels.
    ``method``: ``"model"`` (a translation in which the clear part of the input is held and
    ``cond`` conditions the whole scene), ``"interpolate"`` (GDAL's inverse-distance fill) or
    ``"ridge"`` (a per-pixel ridge regression from ``cond`` fitted on the clear pixels).
    ``feather``: how far into the mask the method is matched to its clear surroundings (the
    residual against the clear pixels, interpolated inward and added): ``None`` (the default)
    across the whole mask, ``N`` fading out over N pixels, 0 not at all.
    ``options`` are :func:`translate`'s (``steps``, ``samples``, ``seed``, ``precision``,
    ``overwrite``, ``date``...).

    Returns a Dataset on the input grid: ``filled`` (the input's stored values, its clear pixels
    bit for bit), ``filled_mask`` (0 kept, 1 filled, 255 no data) and, with ``samples > 1``,
    ``std`` (the filled pixels' standard deviation over samples, physical units). With
    ``output``, the same is written (``<stem>_filled`` and ``<stem>_std`` beside it) and read
    back lazily. See :mod:`geocopgen.translation.fill`.
    """
    from geocopgen.translation import fill as gap
    from geocopgen.translation import fill_mask

    reading, sampling, writing = split_options(options, writing={"path": output})
    request = gap.FillOptions(mask=mask, dilate=dilate, method=method, feather=feather)
    inputs = open_inputs(source, cond, modality=modality, reading=reading)
    name, opened = next(iter(inputs.items()))
    array = opened.array
    if not name.startswith("s2"):
        raise InputError(
            f"{array.attrs.get('source', 'the input')}: fill fills Sentinel-2 (L1C or L2A); this "
            f"input is {get_modality(name).long_name}"
        )
    conditions = {k: v for k, v in inputs.items() if k != name}
    uses_model = method == "model" or str(mask) == "model"
    if uses_model:
        check_model(model)
    created = writing.prepare(inputs=[a.source for a in inputs.values()])
    with removed_on_failure(created):
        loaded = load_model(model, device=device) if uses_model else None

        def cloud_mask(a: xr.DataArray) -> np.ndarray:
            classes = _translate("cloud_mask", {name: opened}, grid_of(a), reading=reading,
                                 writing=WriteOptions(grid="input"), sampling=sampling,
                                 model=loaded, device=device)  # fmt: skip
            return np.isin(np.asarray(classes.values)[0], (1, 2, 3))

        found = fill_mask.resolve(array, mask, dilate, model_mask=cloud_mask if loaded else None)
        conds = ", ".join(f"{k}={v.source}" for k, v in conditions.items())
        return gap.run(opened, found, request, conditions, sampling, reading, writing,
                       model=loaded, model_name=_model_name(model),
                       tags={"CONDITIONS": conds or "none"})  # fmt: skip


def has_valid_pixels(array: xr.DataArray) -> bool:
    """Whether any pixel of a ModalityArray holds data (nodata reads as NaN). Reads block by
    block and stops at the first valid one, so a usual raster costs one block; only an
    all-nodata one is read whole, which is what saying so takes."""
    data = array.data
    if not hasattr(data, "blocks"):  # in memory
        return bool(np.isfinite(data).any())
    return any(
        bool(np.isfinite(data.blocks[index].compute()).any())
        for index in np.ndindex(*data.numblocks)
    )


@dataclass(frozen=True)
class Capabilities:
    """What a model can make from an input of one modality (``geocopgen info``)."""

    model: str
    model_modalities: tuple[str, ...]
    modality: str
    translate_to: tuple[str, ...]
    chip_size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_modalities": list(self.model_modalities),
            "can_translate_to": list(self.translate_to),
            "chip_size": self.chip_size,
        }


def capabilities(modality: str, model: ModelLike = None) -> Capabilities:
    """Which modalities ``model`` can translate an input of ``modality`` into.

    A model folder answers from its JSON configs alone (milliseconds, no torch: ``geocopgen
    info`` must not load weights to say this); a hub id or a model object is loaded."""
    name = get_modality(modality).name
    label = _model_name(model)
    check_model(model)
    config = _folder_config(model)
    if config is not None:
        folder, pipeline_json = config
        if pipeline_json.get("kind") == "copgen":
            return _copgen_capabilities(pipeline_json.get("vaes", []), name, label)
        return _pipeline_capabilities(folder, pipeline_json, name, label)
    from geocopgen.copgen.model import CopgenModel

    pipeline = load_model(model, device="cpu")
    if isinstance(pipeline, CopgenModel):
        return _copgen_capabilities(pipeline.encodable, name, label)
    codecs = {k: type(v).__name__ for k, v in pipeline.autoencoders.items()}
    downsampling = {k: v.downsampling for k, v in pipeline.autoencoders.items()}
    latent = pipeline.backbone.config.latent_size
    return _canvas_capabilities(pipeline.modalities, codecs, downsampling, latent, name, label)


def _folder_config(model: ModelLike) -> tuple[Path, dict[str, Any]] | None:
    """``(folder, its pipeline.json)`` for a local model folder; ``None`` for anything else."""
    from geocopgen.weights import resolve_model

    if model is not None and not isinstance(model, (str, os.PathLike)):
        return None
    folder = Path(resolve_model("default" if model is None else model))
    try:
        return folder, json.loads((folder / "pipeline.json").read_text())
    except (OSError, ValueError):
        return None


def _pipeline_capabilities(
    folder: Path, config: Mapping[str, Any], name: str, label: str
) -> Capabilities:
    """A one-canvas pipeline folder's capabilities from its ``pipeline.json`` and the codec and
    backbone ``config.json`` files (the chip size is latent size x codec downsampling)."""
    def read(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"{path}: unreadable ({err}); the model folder is damaged"
            ) from None

    codecs = dict(config.get("autoencoders", {}))
    downsampling = {
        k: 2 ** (len(read(folder / "autoencoders" / k / "config.json")["block_out_channels"]) - 1)
        for k in codecs
    }
    latent = read(folder / "backbone" / "config.json")["latent_size"]
    modalities = tuple(config.get("modalities", ()))
    return _canvas_capabilities(modalities, codecs, downsampling, latent, name, label)


def _canvas_capabilities(
    modalities: Sequence[str],
    codecs: Mapping[str, str],
    downsampling: Mapping[str, int],
    latent_size: int,
    name: str,
    label: str,
) -> Capabilities:
    """A one-canvas model makes every modality with a codec; it takes ``name`` if it has a
    raster codec for it (a thumbnail codec works on RGB pictures, not rasters)."""
    if name not in modalities or name not in codecs:
        raise ModalityError(
            f"the model ({label}) does not take {get_modality(name).long_name} inputs; it has "
            f"{', '.join(sorted(codecs))}"
        )
    if codecs[name] != "ModalityAutoencoder":
        raise ModalityError(
            f"the model's {name} autoencoder is a {codecs[name]}, which works on RGB thumbnails, "
            "not on rasters in physical units; use a geocopgen model (e.g. the bundled default)"
        )
    return Capabilities(
        model=label,
        model_modalities=tuple(modalities),
        modality=name,
        translate_to=tuple(m for m in modalities if m != name and m in codecs),
        chip_size=latent_size * downsampling[name],
    )


def _copgen_capabilities(encodable: Sequence[str], name: str, label: str) -> Capabilities:
    """A COP-GEN model makes every modality whose slots all have a VAE (``encodable``); an
    input counts if at least one of its slots can be encoded."""
    from geocopgen.copgen.layout import MODALITY_SLOTS

    whole = tuple(m for m, keys in MODALITY_SLOTS.items() if set(keys) <= set(encodable))
    if not set(MODALITY_SLOTS.get(name, ())) & set(encodable):
        raise ModalityError(
            f"the model ({label}) cannot encode {get_modality(name).long_name}: it has VAEs for "
            f"{', '.join(encodable) or 'no slot'}"
        )
    return Capabilities(
        model=label,
        model_modalities=tuple(MODALITY_SLOTS),
        modality=name,
        translate_to=tuple(m for m in whole if m != name),
        chip_size=192,  # px at 10 m: every COP-GEN chip covers 1920 m
    )
