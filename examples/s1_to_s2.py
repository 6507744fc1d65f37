"""Sentinel-1 RTC (VV, VH in dB) → Sentinel-2 L2A reflectance over the example tile.

python examples/s1_to_s2.py    # → out/examples/s1_to_s2.tif, examples/s1_to_s2.png
"""

from pathlib import Path

import numpy as np
import rasterio
from _pictures import panel, rgb

import geocopgen

HERE = Path(__file__).parent
TILE = HERE / "data" / "terramind"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    s1 = TILE / "S1RTC" / "38D_378R_2_3.tif"
    s2 = geocopgen.translate(s1, "s2l2a", output=OUT / "s1_to_s2.tif", seed=0, overwrite=True)

    with rasterio.open(s1) as src, rasterio.open(TILE / "S2L2A" / "38D_378R_2_3.tif") as ref:
        vv, vh = src.read()
        real = ref.read([4, 3, 2])
    radar = np.stack([vv, vh, vv - vh])  # the usual VV / VH / ratio false colour
    panel(
        [
            ("Sentinel-1 RTC (input)", rgb(radar)),
            ("generated S2 L2A (B04 B03 B02)", rgb(s2.sel(band=["B04", "B03", "B02"]).values)),
            ("real S2 L2A", rgb(real)),
        ],
        HERE / "s1_to_s2.png",
    )
    print(f"wrote {OUT / 's1_to_s2.tif'} ({s2.sizes['band']} bands of reflectance)")


if __name__ == "__main__":
    main()
