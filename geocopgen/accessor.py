"""The ``.copgen`` xarray accessor: :mod:`geocopgen.api` on DataArrays and Datasets.

It follows rioxarray's ``.rio``: one base class for what both share, a thin subclass per type,
no state of its own (xarray makes a new accessor for every object), and every method returns a
**new** georeferenced object with its ``spatial_ref`` coordinate intact. Inputs may be lazy (dask):
chips are read window by window when the model needs them; results are computed.

.. code-block:: python

    import geocopgen  # registers .copgen
    s2 = rioxarray.open_rasterio("s2.tif", chunks=True)            # lazy
    dem = s2.copgen.translate("dem", modality="s2l2a", steps=8)    # DataArray, same grid
    spread = s2.copgen.translate("dem", modality="s2l2a", samples=8).sel(band="elevation_std")
    ds = xr.Dataset({"s2l2a": s2, "s1rtc": s1})
    ds2 = ds.copgen.translate("dem")                               # ds + a "dem" variable
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from geocopgen.errors import GeoCopGenError, GridError, InputError
from geocopgen.io.detect import detect_modality

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox


class _CopGenBase:
    """What the DataArray and Dataset accessors share: the object and its grid."""

    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    @property
    def grid(self) -> GeoBox:
        """The object's raster grid, an odc-geo GeoBox (shape, affine, CRS)."""
        from geocopgen.raster.grid import (
            grid_of,  # odc-geo on first use: import geocopgen stays light
        )

        return grid_of(self._obj, source=_label(self._obj))


@xr.register_dataarray_accessor("copgen")
class CopGenArrayAccessor(_CopGenBase):
    """``da.copgen``: translate, generate, fill, encode and decode one raster."""

    @property
    def modality(self) -> str:
        """The modality the array holds: its ``modality`` attr, else detected from its band
        names or band count (raises :class:`~geocopgen.errors.UnknownModalityError` if unsure)."""
        return _modality_of(self._obj)

    def translate(
        self,
        to: str,
        *,
        cond: Mapping[str, Any] | Sequence[Any] | Any | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """This array (plus ``cond``) translated into ``to``; see :func:`geocopgen.api.translate`
        for the options (``modality``, ``steps``, ``samples``, ``seed``, ``grid``, ...)."""
        return _api().translate(_mean_only(self._obj), to, cond=cond, **kwargs)

    def generate(
        self,
        to: str,
        *,
        cond: Mapping[str, Any] | Sequence[Any] | Any | None = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """``to`` generated on this array's grid from ``cond`` only (unconditional when
        ``None``); the array itself gives the place, not a condition."""
        return _api().generate(to, like=self.grid, cond=cond, **kwargs)

    def fill(
        self,
        *,
        cond: Mapping[str, Any] | Sequence[Any] | Any | None = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """This Sentinel-2 array filled where ``mask`` says (``"nodata"`` by default, ``"scl"``,
        ``"model"`` or a mask raster), from its clear pixels and ``cond``; see
        :func:`geocopgen.api.fill` (``mask``, ``dilate``, ``method``, ``samples``...)."""
        return _api().fill(self._obj, cond=cond, **kwargs)

    def encode(self, **kwargs: Any) -> xr.DataArray | dict[str, xr.DataArray]:
        """Latents on the latent grid, one array per slot for a COP-GEN model (see
        :func:`geocopgen.api.encode`)."""
        return _api().encode(_mean_only(self._obj), **kwargs)

    def decode(self, **kwargs: Any) -> xr.DataArray:
        """Latents (from :meth:`encode`) back to a raster (see :func:`geocopgen.api.decode`)."""
        return _api().decode(self._obj, **kwargs)


@xr.register_dataset_accessor("copgen")
class CopGenDatasetAccessor(_CopGenBase):
    """``ds.copgen``: variables are modalities on one grid; results come back as variables."""

    @property
    def modalities(self) -> dict[str, str]:
        """Variable name → modality, for every variable that is a known modality."""
        out = {}
        for name, var in self._obj.data_vars.items():
            try:
                out[str(name)] = _modality_of(var)
            except GeoCopGenError:
                continue
        return out

    def translate(
        self,
        to: str,
        *,
        cond: Sequence[str] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """A copy with variable ``name`` (default ``to``) translated from the variables ``cond``
        (default: every modality variable). ``grid`` must stay the Dataset's own."""
        variables = list(cond) if cond is not None else list(self.modalities)
        if not variables:
            raise InputError(
                "this Dataset has no variable geocopgen recognises as a modality; set a "
                "'modality' attr on them or name them with cond=[...]"
            )
        inputs = [_mean_only(self._obj[v]) for v in variables]
        result = _api().translate(inputs[0], to, cond=inputs[1:] or None, **kwargs)
        return self._with(result, name or to)

    def generate(
        self,
        to: str,
        *,
        cond: Sequence[str] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """A copy with ``to`` generated on the Dataset's grid from the variables ``cond``
        (unconditional when ``None``)."""
        inputs = [_mean_only(self._obj[v]) for v in cond] if cond else None
        result = _api().generate(to, like=self.grid, cond=inputs, **kwargs)
        return self._with(result, name or to)

    def encode(self, variables: Sequence[str] | None = None, **kwargs: Any) -> xr.Dataset:
        """A Dataset of latents, one variable per encoded modality variable."""
        names = list(variables) if variables is not None else list(self.modalities)
        out = xr.Dataset()
        for v in names:
            latents = _api().encode(_mean_only(self._obj[v]), **kwargs)
            out = out.assign({v: _own_dim(latents, "latent", v, out)})
        return out

    def _with(self, result: xr.DataArray | dict[str, xr.DataArray], name: str) -> xr.Dataset:
        """The Dataset plus ``result`` (which must lie on the Dataset's own grid)."""
        from geocopgen.raster.grid import almost_equal, describe, grid_of

        if isinstance(result, dict):
            raise GridError(
                f"the result is {len(result)} arrays on their own grids "
                f"({', '.join(result)}), not one on this Dataset's grid; leave grid= unset "
                "(or grid='input') to have them resampled onto it"
            )

        grid, got = self.grid, grid_of(result, source="xarray input")
        if not almost_equal(grid, got):
            raise GridError(
                f"the result is on {describe(got)}, not on this Dataset's grid ({describe(grid)}); "
                "use "
                "ds[var].copgen... for outputs on another grid (e.g. grid='native')"
            )
        result = result.drop_vars("spatial_ref").assign_coords(
            x=self._obj["x"].values, y=self._obj["y"].values
        )
        return self._obj.assign({name: _own_dim(result, "band", name, self._obj)})


def _api() -> Any:
    """geocopgen.api, imported when first used (it pulls in torch)."""
    from geocopgen import api

    return api


def _own_dim(array: xr.DataArray, dim: str, name: str, dataset: xr.Dataset) -> xr.DataArray:
    """``array`` ready to join ``dataset``: ``dim`` kept if the Dataset lacks it or has the same
    coordinate, else renamed ``<dim>_<name>`` (a Dataset holds one coordinate per dimension)."""
    if dim not in dataset.dims or (dim in dataset.coords and array[dim].equals(dataset[dim])):
        return array
    return array.rename({dim: f"{dim}_{name}"})


def _band_dim(array: xr.DataArray) -> str | None:
    dims = [d for d in array.dims if d not in (array.rio.x_dim, array.rio.y_dim)]
    return str(dims[0]) if dims else None


def _band_names(array: xr.DataArray) -> list[str]:
    dim = _band_dim(array)
    return [str(v) for v in array[dim].values] if dim and dim in array.coords else []


def _mean_bands(names: Sequence[str]) -> list[str] | None:
    """The mean bands of a ``samples > 1`` result (``<band>..., <band>_std...``), else None."""
    half = len(names) // 2
    if half and names[half:] == [f"{n}_std" for n in names[:half]]:
        return list(names[:half])
    return None


def _mean_only(array: xr.DataArray) -> xr.DataArray:
    """A ``samples > 1`` result's mean bands (what encoding it, or conditioning on it, means);
    other arrays as they are."""
    mean = _mean_bands(_band_names(array))
    return array if mean is None else array.isel({_band_dim(array): slice(0, len(mean))})


def _modality_of(array: xr.DataArray) -> str:
    """The modality of an array; a ``samples > 1`` result (mean and ``_std`` bands) is its
    target's, judged by its mean bands."""
    dim = _band_dim(array)
    names = _band_names(array)
    count = array.sizes[dim] if dim else 1
    if (mean := _mean_bands(names)) is not None:
        names, count = mean, len(mean)
    tags = {"MODALITY": array.attrs["modality"]} if array.attrs.get("modality") else {}
    return detect_modality(
        path=_label(array), count=count, band_names=names, tags=tags
    ).modality.name


def _label(obj: xr.DataArray | xr.Dataset) -> str:
    return str(obj.attrs.get("source") or getattr(obj, "name", None) or "xarray input")
