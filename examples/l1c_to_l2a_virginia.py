"""Sentinel-2 L1C → L2A (top- to bottom-of-atmosphere) over the whole Virginia scene.

    python examples/l1c_to_l2a_virginia.py   # → out/examples/virginia_L2A.tif (COG), a PNG

The input is a folder with one file per band at 10, 20 and 60 m (1947 x 1933 px at 10 m): the
coarser bands are resampled onto the 10 m grid as they are read, the scene is translated as one
seamless latent canvas (9 x 9 chips), and the output streams into a Cloud Optimized GeoTIFF.
"""

from pathlib import Path

from _pictures import panel, rgb

import geocopgen
from geocopgen.io import open_raster

HERE = Path(__file__).parent
SCENE = HERE.parent / ".." / "shared" / "data" / "s2" / "virginia_L1C"
OUT = HERE.parent / "out" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    l1c = open_raster(SCENE, offset=0)  # a 2016 product: no +1000 DN offset
    l2a = geocopgen.translate(
        l1c, "s2l2a", output=OUT / "virginia_L2A.tif", cog=True, seed=0, overwrite=True
    )
    assert l2a.rio.transform() == l1c.rio.transform() and l2a.shape[1:] == l1c.shape[1:]

    step = 4  # a quick-look picture
    before = l1c.sel(band=["B04", "B03", "B02"])[:, ::step, ::step].values
    after = l2a.sel(band=["B04", "B03", "B02"])[:, ::step, ::step].values
    panel(
        [("Sentinel-2 L1C (input)", rgb(before)), ("generated L2A", rgb(after))],
        HERE / "l1c_to_l2a_virginia.png",
        width=480,
    )
    print(f"wrote {OUT / 'virginia_L2A.tif'}: {l2a.rio.width} x {l2a.rio.height} px, COG")


if __name__ == "__main__":
    main()
