"""Sentinel-2 L2A → DEM over the example TerraMind tile (Tanzania, 224 x 224 px at 10 m).

    python examples/s2_to_dem.py    # → out/examples/s2_to_dem.tif, examples/s2_to_dem.png

The output is a GeoTIFF in metres on exactly the input's grid (CRS, transform, size).
"""

from pathlib import Path

import rasterio
from _pictures import panel, ramp, rgb

import geocopgen

HERE = Path(__file__).parent
TILE = HERE / "data" / "terramind"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    s2 = TILE / "S2L2A" / "38D_378R_2_3.tif"
    dem = geocopgen.translate(s2, "dem", output=OUT / "s2_to_dem.tif", seed=0, overwrite=True)

    with rasterio.open(s2) as src, rasterio.open(TILE / "DEM" / "38D_378R_2_3.tif") as ref:
        assert dem.rio.crs == src.crs and dem.rio.transform() == src.transform
        picture = rgb(src.read([4, 3, 2]))  # B04, B03, B02
        real = ref.read(1)
    made = dem.values[0]
    panel(
        [
            ("Sentinel-2 L2A (input)", picture),
            (f"generated DEM, mean {made.mean():.0f} m", ramp(made)),
            (f"Copernicus DEM, mean {real.mean():.0f} m", ramp(real)),
        ],
        HERE / "s2_to_dem.png",
    )
    print(f"wrote {OUT / 's2_to_dem.tif'}: {made.min():.0f} to {made.max():.0f} m")


if __name__ == "__main__":
    main()
