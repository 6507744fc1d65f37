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
:class:`~geocopgen.rastergrid.RasterGrid` names any grid. Conditions on other grids or CRSs are
resampled onto the working grid, with a :class:`~geocopgen.errors.ResamplingWarning` each.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geocopgen.domain import DomainGuard
from geocopgen.errors import (
    ConfigError,
    GeoCopGenError,
    GridError,
    InputError,
    ModalityError,
    ResamplingWarning,
)
from geocopgen.io import align, grid_of, model_grid, open_raster, utm_grid
from geocopgen.io.source import open_dataset
from geocopgen.modalities import get_modality
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.mosaic import MosaicWriter
from geocopgen.outputs import prepare_output
from geocopgen.rastergrid import RasterGrid
from geocopgen.translation import (
    CanvasTranslator,
    TranslateOptions,
    decode_canvas,
    encode_canvas,
    layout_for,
    translate_to_file,
)
from geocopgen.translation.translator import check_codec
from geocopgen.weights import resolve_model

InputLike = str | os.PathLike | Any  # a path, a rasterio dataset, an xarray DataArray/Dataset
GridLike = Literal["input", "model", "native"] | RasterGrid
ModelLike = str | os.PathLike | CopGenPipeline | None

__all__ = [
    "Capabilities",
    "capabilities",
    "decode",
    "encode",
    "generate",
    "load_model",
    "open_inputs",
    "resolve_device",
    "translate",
]


# --- models -----------------------------------------------------------------------------------
def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, else Apple MPS, else CPU; or the device named."""
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
) -> CopGenPipeline:
    """A :class:`~geocopgen.models.CopGenPipeline` on ``device``.

    ``model``: ``None`` or ``"default"`` (the bundled model), a pipeline folder, a hub id when
    online, or a pipeline object (moved to ``device`` if one is given). Loaded folders are
    cached per (folder, device), so repeated calls in a notebook cost nothing.
    """
    if isinstance(model, CopGenPipeline):
        return model.to(resolve_device(device)) if device is not None else model
    path = resolve_model("default" if model is None else model)
    dev = resolve_device(device)
    key = (str(Path(path).resolve()) if Path(path).exists() else str(path), str(dev))
    if key not in _MODELS:
        if len(_MODELS) >= 2:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = CopGenPipeline.from_pretrained(path).to(dev)
    return _MODELS[key]


def _model_name(model: ModelLike) -> str:
    if isinstance(model, CopGenPipeline):
        return "a CopGenPipeline object"
    return "default (bundled)" if model in (None, "default") else str(model)


# --- inputs -----------------------------------------------------------------------------------
def _open_one(obj: InputLike, modality: str | None = None) -> xr.DataArray:
    """One input as a ModalityArray (lazy)."""
    if isinstance(obj, xr.Dataset):
        raise InputError(
            "a Dataset holds several modalities; pass it as the source (each variable becomes a "
            "condition) or pass its variables, e.g. ds['s2l2a']"
        )
    if isinstance(obj, xr.DataArray):
        if _is_modality_array(obj, modality):
            return obj  # already decoded (e.g. by open_raster): keep its windowed reads
        return open_raster(obj, modality)
    if isinstance(obj, rasterio.io.DatasetReaderBase):
        if Path(obj.name).exists():
            return open_raster(obj.name, modality)
        import rioxarray

        return open_raster(rioxarray.open_rasterio(obj, chunks=True), modality)
    return open_raster(Path(obj), modality)


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
) -> dict[str, xr.DataArray]:
    """``source`` (+ ``cond``) as ModalityArrays keyed by modality, ``source`` first.

    ``cond`` is a mapping modality → input (the modality is then stated, not detected), or one
    input or a sequence of inputs (detected). A ``Dataset`` source contributes every variable.
    """
    items: list[tuple[str | None, InputLike]] = []
    if isinstance(source, xr.Dataset):
        items += [(None, source[v]) for v in source.data_vars]
    elif source is not None:
        items.append((modality, source))
    if isinstance(cond, Mapping):
        items += [(get_modality(k).name, v) for k, v in cond.items()]
    elif isinstance(cond, (list, tuple)):
        items += [(None, v) for v in cond]
    elif cond is not None:
        items.append((None, cond))
    out: dict[str, xr.DataArray] = {}
    for stated, obj in items:
        array = _open_one(obj, stated)
        name = array.attrs["modality"]
        if name in out:
            raise InputError(
                f"two inputs are {get_modality(name).long_name} ({out[name].attrs.get('source')} "
                f"and {array.attrs.get('source')}); give each modality once"
            )
        out[name] = array
    return out


def _work_and_out_grids(
    reference: RasterGrid, target: str, grid: GridLike
) -> tuple[RasterGrid, RasterGrid | None]:
    """The 10 m working grid for ``reference`` and the output grid (``None``: the working one)."""
    if isinstance(grid, RasterGrid):
        grid.validate("the requested output grid")
        reference = grid
    elif grid not in ("input", "model", "native"):
        raise ConfigError(f"grid must be 'input', 'model', 'native' or a RasterGrid, got {grid!r}")
    work = model_grid(reference, target)
    if grid == "model":
        return work, None
    if grid == "native":
        res = get_modality(target).native_resolution
        return work, (None if np.isclose(res, work.res[0]) else work.at_resolution(res))
    if reference.crs != work.crs:
        warnings.warn(
            f"the input grid is in {reference.crs}, which is not projected; the output is "
            f"written on the {work.crs} grid the model works on ({work})",
            ResamplingWarning,
            stacklevel=3,
        )
        return work, None
    return work, (None if reference == work else reference)


# --- outputs ----------------------------------------------------------------------------------
def _read_output(path: Path, target: str, samples: int, *, load: bool) -> xr.DataArray:
    """The written GeoTIFF as a georeferenced DataArray (lazy, or loaded into memory), with its
    provenance tags as lower-case ``attrs``."""
    with rasterio.open(path) as src:
        names, tags = list(src.descriptions), src.tags()
    if samples == 1:
        array = open_raster(path, target)  # a ModalityArray of the target
    else:
        import rioxarray

        raw = rioxarray.open_rasterio(path, chunks=True, mask_and_scale=False)
        modality = get_modality(target)
        array = xr.DataArray(
            raw.data,
            dims=("band", "y", "x"),
            coords={"band": names, "y": raw["y"].values, "x": raw["x"].values},
            attrs={"modality": modality.name, "units": modality.units, "source": str(path)},
            name=f"{modality.name}_mean_std",
        )
        array = array.rio.write_crs(raw.rio.crs).rio.write_transform(raw.rio.transform())
        array = array.rio.write_nodata(np.nan, encoded=False)
    array.attrs.update({k.lower(): v for k, v in tags.items() if k.isupper()})
    return array.load() if load else array


def _run(
    target: str,
    conditions: Mapping[str, xr.DataArray],
    work: RasterGrid,
    out_grid: RasterGrid | None,
    *,
    output: str | os.PathLike | None,
    model: ModelLike,
    device: str | torch.device | None,
    options: TranslateOptions,
    cog: bool,
    overwrite: bool,
) -> xr.DataArray:
    if output is not None:  # before the model loads: a refused output costs nothing
        sources = [str(a.attrs.get("source", "")) for a in conditions.values()]
        prepare_output(output, overwrite=overwrite, inputs=sources)
    pipeline = load_model(model, device=device)
    translator = CanvasTranslator(pipeline, target, options)
    names = translator.check_conditions(conditions)
    aligned = align(dict(zip(names, conditions.values(), strict=True)), like=work) if names else {}

    def write(path: Path) -> None:
        translate_to_file(
            translator,
            work,
            aligned,
            path,
            out_grid=out_grid,
            cog=cog,
            model=_model_name(model),
            overwrite=overwrite,
        )

    return _written(write, translator.target, options.samples, output)


# --- translate / generate -----------------------------------------------------------------------
def translate(
    source: InputLike | None,
    to: str,
    *,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    modality: str | None = None,
    output: str | os.PathLike | None = None,
    model: ModelLike = None,
    steps: int | None = None,
    samples: int = 1,
    seed: int = 0,
    grid: GridLike = "input",
    overlap: int | None = None,
    seamless: bool = True,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    cog: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.DataArray:
    """Translate ``source`` (and the extra conditions ``cond``) into modality ``to``.

    ``source``: a path, rasterio dataset, DataArray or Dataset (``None`` if ``cond`` holds every
    input); ``modality`` states the source's modality (detected when omitted). ``samples`` > 1
    returns the per-pixel mean and standard deviation of that many samples as bands
    ``<band>`` and ``<band>_std``. ``seed`` fixes the result (noise is seeded per position).
    ``steps``: sampler steps (model default). ``overlap``: chip overlap in px (default 64).
    ``seamless=False`` denoises chips independently (for comparison only).
    """
    conditions = open_inputs(source, cond, modality=modality)
    if not conditions:
        raise InputError("translate needs at least one input; use generate() for none")
    target = get_modality(to).name
    reference = grid_of(next(iter(conditions.values())))
    work, out_grid = _work_and_out_grids(reference, target, grid)
    options = TranslateOptions(
        steps=steps,
        samples=samples,
        seed=seed,
        overlap=overlap,
        seamless=seamless,
        batch_size=batch_size,
        progress=progress,
    )
    return _run(
        target,
        conditions,
        work,
        out_grid,
        output=output,
        model=model,
        device=device,
        options=options,
        cog=cog,
        overwrite=overwrite,
    )


def grid_for(
    *,
    cell: str | None = None,
    bbox: Sequence[float] | None = None,
    like: InputLike | RasterGrid | None = None,
    resolution: float = 10.0,
) -> RasterGrid:
    """A grid from exactly one description: a Major TOM ``cell`` (its 1068 px product grid in
    the cell's UTM zone), a lon/lat ``bbox`` (west, south, east, north; a covering UTM grid) or
    ``like`` (an input's grid, or a RasterGrid)."""
    given = [k for k, v in {"cell": cell, "bbox": bbox, "like": like}.items() if v is not None]
    if len(given) != 1:
        raise ConfigError(
            f"give exactly one of cell, bbox or like to place the output (got {given or 'none'})"
        )
    if cell is not None:
        from geocopgen.grid import cell_utm_crs, product_transform

        transform, width, height = product_transform(cell, resolution=resolution)
        return RasterGrid(CRS.from_string(cell_utm_crs(cell)), transform, width, height)
    if bbox is not None:
        west, south, east, north = (float(v) for v in bbox)
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise GridError(
                f"bbox {tuple(bbox)} is not (west, south, east, north) in degrees with "
                "west < east and south < north"
            )
        extent = Affine(east - west, 0, west, 0, south - north, north)
        return utm_grid(RasterGrid(CRS.from_epsg(4326), extent, 1, 1), resolution)
    return _grid_of_any(like)


def _grid_of_any(like: InputLike | RasterGrid) -> RasterGrid:
    """The grid of any raster (no modality needed): a grid, an xarray object, a dataset, a file
    or a band folder."""
    if isinstance(like, RasterGrid):
        return like
    if isinstance(like, (xr.DataArray, xr.Dataset)):
        return RasterGrid.from_xarray(like, source=str(like.attrs.get("source", "xarray input")))
    if isinstance(like, rasterio.io.DatasetReaderBase):
        return RasterGrid.from_dataset(like)
    path = Path(like)
    if path.is_dir():
        return grid_of(_open_one(path))
    with open_dataset(str(path)) as src:
        return RasterGrid.from_dataset(src, source=str(path))


def generate(
    to: str,
    *,
    cell: str | None = None,
    bbox: Sequence[float] | None = None,
    like: InputLike | RasterGrid | None = None,
    cond: Mapping[str, InputLike] | Sequence[InputLike] | InputLike | None = None,
    output: str | os.PathLike | None = None,
    model: ModelLike = None,
    steps: int | None = None,
    samples: int = 1,
    seed: int = 0,
    grid: Literal["model", "native"] = "model",
    overlap: int | None = None,
    seamless: bool = True,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    cog: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.DataArray:
    """Generate modality ``to`` on a georeferenced grid: a Major TOM ``cell``, a lon/lat
    ``bbox`` or the grid of ``like``; unconditionally, or conditioned on ``cond`` (resampled onto
    that grid). Without a place, the first condition's grid is used. ``grid="native"`` writes a
    DEM at 30 m. Other arguments as in :func:`translate`.
    """
    conditions = open_inputs(None, cond)
    target = get_modality(to).name
    if cell is None and bbox is None and like is None:
        if not conditions:
            raise ConfigError("generate needs a place: cell=, bbox= or like= (or conditions)")
        place = grid_of(next(iter(conditions.values())))
    else:
        place = grid_for(cell=cell, bbox=bbox, like=like)
    if grid not in ("model", "native"):
        raise ConfigError(f"generate writes on the 'model' or 'native' grid, got {grid!r}")
    work, out_grid = _work_and_out_grids(place, target, grid)
    options = TranslateOptions(
        steps=steps,
        samples=samples,
        seed=seed,
        overlap=overlap,
        seamless=seamless,
        batch_size=batch_size,
        progress=progress,
    )
    return _run(
        target,
        conditions,
        work,
        out_grid,
        output=output,
        model=model,
        device=device,
        options=options,
        cog=cog,
        overwrite=overwrite,
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
) -> xr.DataArray:
    """The scene's latents ``(latent, y, x)`` on the latent grid (8 x the pixel size, same CRS
    and origin): chip encodings (posterior means) blended with raised-cosine weights. This is the
    translator's latent canvas, so it covers at least one chip (256 px): a smaller raster's
    latents extend past its edge over its reflection padding. Cells that no chip with valid
    pixels covers are NaN. ``attrs`` keep what :func:`decode` needs (the pixel grid's size)."""
    array = _open_one(source, modality)
    name = array.attrs["modality"]
    pipeline = load_model(model, device=device)
    grid = grid_of(array)
    work = model_grid(grid, name)
    if work != grid:
        array = align([array], like=work)[0]
    layout = layout_for(pipeline, work, [name], overlap)
    latents, has_data, _ = encode_canvas(
        pipeline, array, layout, batch_size=batch_size, progress=progress
    )
    values = latents[0].cpu().numpy()
    covered = np.zeros(layout.shape, dtype=bool)
    for chip in layout.latent_chips:
        if has_data[chip.row, chip.col]:
            covered[chip.slices] = True
    values[:, ~covered] = np.nan
    rows, cols = layout.shape
    latent_grid = RasterGrid(work.crs, layout.latent_transform, cols, rows)
    x, y = latent_grid.xy_coords()
    out = xr.DataArray(
        values,
        dims=("latent", "y", "x"),
        coords={"latent": np.arange(values.shape[0]), "y": y, "x": x},
        name=f"{name}_latents",
        attrs={
            "modality": name,
            "source": str(array.attrs.get("source", "")),
            "model": _model_name(model),
            "downsampling": layout.factor,
            "pixel_width": work.width,
            "pixel_height": work.height,
            "scaling_factor": float(check_codec(pipeline, name).config.scaling_factor),
        },
    )
    out = out.rio.write_crs(work.crs).rio.write_transform(layout.latent_transform)
    return out.rio.write_nodata(np.nan, encoded=False)


def decode(
    latents: xr.DataArray,
    *,
    model: ModelLike = None,
    output: str | os.PathLike | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.DataArray:
    """Latents from :func:`encode` back to a ModalityArray on the pixel grid they came from,
    decoded chip by chip and blended like a translation (NaN where the latents are NaN)."""
    if output is not None:
        prepare_output(output, overwrite=overwrite)
    name = latents.attrs.get("modality")
    if not name or "downsampling" not in latents.attrs:
        raise InputError(
            "decode() needs latents made by encode() (attrs 'modality' and 'downsampling')"
        )
    pipeline = load_model(model, device=device)
    f = int(latents.attrs["downsampling"])
    grid = RasterGrid(
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

    def write(path: Path) -> None:
        tags = {"OPERATION": "decode", "MODEL": _model_name(model)}
        bands = get_modality(name).band_names
        guard = DomainGuard(name, layout.pixel_chips)
        chips = decode_canvas(pipeline, name, canvas, layout, progress=progress, guard=guard)
        with MosaicWriter(
            path,
            grid,
            bands,
            chips=layout.pixel_chips,
            modality=name,
            tags=tags,
            overwrite=overwrite,
        ) as writer:
            for chip, image in chips:
                rows, cols = (np.arange(s.start, s.stop) // f for s in chip.slices)
                image[:, invalid[np.ix_(rows, cols)]] = np.nan
                writer.add(chip, image)
            guard.report(writer)

    return _written(write, name, 1, output)


def _written(
    write: Callable[[Path], None], target: str, samples: int, output: str | os.PathLike | None
) -> xr.DataArray:
    """Run ``write`` into ``output`` (read back lazily) or into a temporary file (loaded)."""
    if output is not None:
        write(Path(output))
        return _read_output(Path(output), target, samples, load=False)
    with tempfile.TemporaryDirectory(prefix="geocopgen-") as tmp:
        path = Path(tmp) / f"{target}.tif"
        write(path)
        return _read_output(path, target, samples, load=True)


# --- what a model can do with an input ---------------------------------------------------------
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
    """Which modalities ``model`` can translate an input of ``modality`` into."""
    pipeline = load_model(model, device="cpu")
    name = get_modality(modality).name
    have = set(pipeline.autoencoders)
    targets = tuple(m for m in pipeline.modalities if m != name and m in have)
    if name not in pipeline.modalities or name not in have:
        raise ModalityError(
            f"the model ({_model_name(model)}) does not take {get_modality(name).long_name} "
            f"inputs; it has {', '.join(sorted(have))}"
        )
    return Capabilities(
        model=_model_name(model),
        model_modalities=pipeline.modalities,
        modality=name,
        translate_to=targets,
        chip_size=pipeline.backbone.config.latent_size * check_codec(pipeline, name).downsampling,
    )
