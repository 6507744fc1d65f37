"""Fill Sentinel-2 under clouds: a real cloud shape laid over the clear example tile, filled from
the clear pixels around it and from Sentinel-1, with the spread of 4 samples.

    python examples/gap_filling.py    # → out/examples/filled*.tif, examples/gap_filling.png

Clear pixels come back bit for bit; the filled ones are the model's, matched to the level of
their clear surroundings. ``filled_filled.tif`` says which pixels were filled.
"""

from pathlib import Path

import numpy as np
import rasterio
from _pictures import panel, ramp, rgb
from PIL import Image

import geocopgen

HERE = Path(__file__).parent
TILE = HERE / "data" / "terramind"
S2 = TILE / "S2L2A" / "38D_378R_2_3.tif"
CLOUDS = HERE / "data" / "clouds_on_38D_378R_2_3.tif"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result = geocopgen.fill(
        S2, cond={"s1rtc": TILE / "S1RTC" / "38D_378R_2_3.tif"}, mask=CLOUDS, samples=4, seed=0,
        output=OUT / "filled.tif", overwrite=True,
    )  # fmt: skip
    with rasterio.open(S2) as src, rasterio.open(CLOUDS) as mask:
        before, cloud = src.read([4, 3, 2]).astype(np.float32), mask.read(1).astype(bool)
    clouded = np.array(rgb(before))
    clouded[cloud] = 255  # what the sensor would have seen
    filled = result["filled"].sel(band=["B04", "B03", "B02"]).values.astype(np.float32)
    std = result["std"].sel(band="B04_std").values
    panel(
        [
            ("Sentinel-2 L2A (clear truth)", rgb(before)),
            ("under the clouds (input)", Image.fromarray(clouded)),
            ("filled (model + S1)", rgb(filled)),
            ("std of 4 samples, B04", ramp(np.where(cloud, std, np.nan))),
        ],
        HERE / "gap_filling.png",
    )
    share = float((result["filled_mask"] == 1).mean())
    print(f"wrote {OUT / 'filled.tif'}: {share:.0%} of the pixels filled")


if __name__ == "__main__":
    main()
