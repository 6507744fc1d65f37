"""Check a catalogued product's band files against what the catalogue says, as they are opened.

Reading is :mod:`geocopgen.io`'s job (one path for every input: :func:`~geocopgen.io.plan_bands`,
:class:`~geocopgen.io.RasterSource`, the codecs and the resampling rule). What is left to a
source is what only it knows: a Major TOM product's grid comes from the Major TOM grid or one
header, and its bands' resolutions and encoding from the dataset's definition, none of it read
from the band files themselves. So each band file is checked when it is first opened, before a
pixel of it is used: same CRS, same footprint, the stated resolution, no undeclared nodata, and
a readable last block. A file that fails is a :class:`DataSourceError` naming
``source/cell/product/band``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geocopgen.errors import DataSourceError, GeoCopGenError
from geocopgen.io.raster_source import open_dataset, probe
from geocopgen.raster.grid import GeoBox, rasterio_crs

#: Tolerance, in metres, when checking that a band file sits where the grid says it should
#: (the Major TOM grid reproduces the products' transforms to about 1e-10 m).
GRID_TOLERANCE_M = 1e-3


@dataclass(frozen=True)
class BandCheck:
    """``check(dataset, key)``: the band file ``key`` fits the product ``grid`` as stated.

    ``bands`` holds ``(key, band name, native resolution)`` per band; ``nodata`` the raw values
    the plan already treats as invalid (a file declaring another one would be misread).
    """

    grid: GeoBox
    bands: tuple[tuple[str, str, float], ...]
    label: str
    nodata: tuple[float, ...] = ()

    @classmethod
    def for_plan(
        cls,
        grid: GeoBox,
        paths: Mapping[str, str],
        resolutions: Mapping[str, float],
        label: str,
        nodata: Sequence[float],
    ) -> BandCheck:
        bands = tuple((paths[b], b, float(resolutions[b])) for b in paths)
        return cls(grid, bands, label, tuple(float(v) for v in nodata))

    def __call__(self, ds: Any, key: str) -> None:
        band, res = next(((b, r) for k, b, r in self.bands if k == key), (key, None))
        where = f"{self.label}/{band}"
        crs = rasterio_crs(self.grid)
        if ds.crs is None or ds.crs != crs:
            raise DataSourceError(
                f"{where}: CRS {ds.crs} differs from the product CRS {crs}; the band "
                "files of one product must share a CRS"
            )
        want = self.grid.boundingbox.bbox
        have = tuple(ds.bounds)
        if max(abs(a - b) for a, b in zip(want, have, strict=True)) > GRID_TOLERANCE_M:
            raise DataSourceError(
                f"{where}: bounds {have} do not match the product grid {want}; the file is not "
                "part of this product or is cut differently"
            )
        if res is not None and not np.allclose(ds.res, (res, res)):
            raise DataSourceError(
                f"{where}: pixel size {ds.res} m, but the band is {res:g} m in this dataset; "
                "the file is not this band"
            )
        for value in ds.nodatavals:
            if value is not None and not _covered(float(value), self.nodata):
                raise DataSourceError(
                    f"{where}: the file declares nodata {value}, which this dataset does not "
                    f"use ({', '.join(map(str, self.nodata)) or 'none'}); the file is not in the "
                    "dataset's layout"
                )
        try:
            probe(ds, where)
        except GeoCopGenError as exc:
            raise DataSourceError(str(exc)) from None


def _covered(value: float, nodata: tuple[float, ...]) -> bool:
    return any((np.isnan(value) and np.isnan(v)) or value == v for v in nodata)


@dataclass(frozen=True)
class CheckedFiles:
    """An opener for band files on disk that runs ``check`` on each file it opens."""

    check: BandCheck

    def __call__(self, path: str) -> Any:
        try:
            ds = open_dataset(path)
        except GeoCopGenError as exc:
            band = next((b for k, b, _ in self.check.bands if k == path), path)
            raise DataSourceError(f"{self.check.label}/{band}: {exc}") from None
        try:
            self.check(ds, path)
        except BaseException:
            ds.close()
            raise
        return ds
