"""geocopgen inside an xarray + dask workflow: lazy inputs, the ``.copgen`` accessor, and
georeferenced results that join the Dataset.

    python examples/xarray_dask.py   # → out/examples/dem_from_s2_s1.tif, a PNG

The inputs stay lazy (dask) until the model reads them chip by chip; the result is a new
variable on the same grid, with ``spatial_ref`` intact, ready for more xarray work.
"""

from pathlib import Path

import rioxarray
import xarray as xr
from _pictures import panel, ramp

import geocopgen  # noqa: F401  (registers the .copgen accessor)

HERE = Path(__file__).parent
TILE = HERE / "data" / "terramind"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    chunks = {"band": -1, "y": 112, "x": 112}
    s2 = rioxarray.open_rasterio(TILE / "S2L2A" / "38D_378R_2_3.tif", chunks=chunks)
    s1 = rioxarray.open_rasterio(TILE / "S1RTC" / "38D_378R_2_3.tif", chunks=chunks)
    # one Dataset; each modality keeps its own band dimension
    ds = xr.Dataset({"s2l2a": s2.rename(band="s2_band"), "s1rtc": s1.rename(band="s1_band")})
    print("modalities:", ds.copgen.modalities)

    ds = ds.copgen.translate("dem", samples=4, seed=0)  # both variables condition the DEM
    nir, red = ds.s2l2a.sel(s2_band=8).astype("float32"), ds.s2l2a.sel(s2_band=4)
    ndvi = (nir - red) / (nir + red)  # still lazy
    elevation = ds.dem.sel(band="elevation")
    print("NDVI-elevation correlation:", float(xr.corr(ndvi, elevation)))

    ds.dem.rio.to_raster(OUT / "dem_from_s2_s1.tif")
    panel(
        [
            ("NDVI (lazy, from S2)", ramp(ndvi.values, (0, 0.8))),
            ("DEM from S2 + S1 (mean of 4)", ramp(elevation.values)),
            ("its spread (std of 4)", ramp(ds.dem.sel(band="elevation_std").values)),
        ],
        HERE / "xarray_dask.png",
    )
    print(f"wrote {OUT / 'dem_from_s2_s1.tif'}")


if __name__ == "__main__":
    main()
