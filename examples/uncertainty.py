"""Uncertainty from 8 samples: S2 L2A → DEM, per-pixel mean and standard deviation bands.

    python examples/uncertainty.py    # → out/examples/dem_8_samples.tif, examples/uncertainty.png

Translation between modalities is one-to-many: the spread of several samples says where the
model is unsure. The output has two bands, ``elevation`` (mean) and ``elevation_std``.
"""

from pathlib import Path

import rasterio
from _pictures import panel, ramp, rgb

import geocopgen

HERE = Path(__file__).parent
S2 = HERE / "data" / "terramind" / "S2L2A" / "38D_378R_2_3.tif"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    dem = geocopgen.translate(
        S2, "dem", samples=8, seed=0, output=OUT / "dem_8_samples.tif", overwrite=True
    )
    mean, std = dem.sel(band="elevation").values, dem.sel(band="elevation_std").values
    with rasterio.open(S2) as src:
        picture = rgb(src.read([4, 3, 2]))
    panel(
        [
            ("Sentinel-2 L2A (input)", picture),
            ("mean of 8 DEM samples", ramp(mean)),
            (f"std of 8 samples (mean {float(std.mean()):.0f} m)", ramp(std)),
        ],
        HERE / "uncertainty.png",
    )
    print(f"wrote {OUT / 'dem_8_samples.tif'}: bands {list(dem['band'].values)}")


if __name__ == "__main__":
    main()
