"""geocopgen inside a plain rasterio script: open with rasterio, translate, keep working in numpy.

    python examples/rasterio_script.py   # → out/examples/dem_and_slope.tif, a PNG

``geocopgen.translate`` takes an open rasterio dataset and returns a georeferenced array; here
the generated DEM and its slope (numpy) are written as two bands with the source's profile.
"""

from pathlib import Path

import numpy as np
import rasterio
from _pictures import panel, ramp, rgb

import geocopgen

HERE = Path(__file__).parent
S2 = HERE / "data" / "terramind" / "S2L2A" / "38D_378R_2_3.tif"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with rasterio.open(S2) as src:
        dem = geocopgen.translate(src, "dem", seed=0).values[0]  # metres, src's grid
        profile = src.profile
        picture = rgb(src.read([4, 3, 2]))
    dy, dx = np.gradient(dem, profile["transform"].e, profile["transform"].a)
    slope = np.degrees(np.arctan(np.hypot(dx, dy)))

    profile.update(count=2, dtype="float32", nodata=np.nan)
    with rasterio.open(OUT / "dem_and_slope.tif", "w", **profile) as dst:
        dst.write(np.stack([dem, slope]).astype("float32"))
        dst.descriptions = ("elevation (m)", "slope (degrees)")
    panel(
        [("Sentinel-2 L2A", picture), ("generated DEM", ramp(dem)), ("its slope", ramp(slope))],
        HERE / "rasterio_script.png",
    )
    print(f"wrote {OUT / 'dem_and_slope.tif'}; median slope {np.median(slope):.1f} degrees")


if __name__ == "__main__":
    main()
