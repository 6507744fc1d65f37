"""Raster-engine benchmark: chip -> identity -> streaming mosaic, against plain rasterio.

    python bench/bench_engine.py            # small ratio + 20000 px memory run (minutes)
    python bench/bench_engine.py --tiles 3  # quicker: a 3 x 3 tiling (~5800 px) instead of 10 x 10

1. Wall time of ``apply_chipwise(identity)`` on the Virginia L1C scene (13 bands, 1933 x 1947 px
   at 10 m, 20/60 m bands resampled), as a ratio against a plain rasterio read of the same bands
   onto the 10 m grid (WarpedVRT, bilinear) and a write of the same float32 reflectance GeoTIFF
   (same tiling and compression). Target: <= 1.5x.
2. Peak RSS of the same run on a scene built by tiling Virginia 10 x 10 (~19500 px a side; one VRT
   per band in a temp dir): must stay under 1.5 GB and within 20% of the small run's peak.

Each measured run is a fresh subprocess (peak RSS = its ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "s2" / "virginia_L1C"
).resolve()
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


# --- the measured runs (each in its own process) --------------------------------------------
def run_engine(scene: str, out: str) -> None:
    from geocopgen.io import open_raster
    from geocopgen.raster.mosaic import apply_chipwise, identity

    array = open_raster(scene, "s2l1c", offset=0)
    apply_chipwise(array, identity, out, progress=False)


def run_plain(scene: str, out: str) -> None:
    """What a user would write with rasterio alone: read every band onto the 10 m grid, write."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    folder = Path(scene)
    with rasterio.open(folder / "B02.tif") as ref:
        profile = ref.profile
        grid = {
            "crs": ref.crs,
            "transform": ref.transform,
            "width": ref.width,
            "height": ref.height,
        }
    stack = np.empty((len(BANDS), grid["height"], grid["width"]), dtype=np.float32)
    for i, band in enumerate(BANDS):
        with rasterio.open(folder / f"{band}.tif") as src:
            if src.transform == grid["transform"]:
                dn = src.read(1)
            else:
                with WarpedVRT(
                    src, resampling=Resampling.bilinear, src_nodata=0, nodata=0, **grid
                ) as vrt:
                    dn = vrt.read(1)
        stack[i] = np.where(dn == 0, np.nan, dn / 10000.0)
    profile.update(
        driver="GTiff", dtype="float32", count=len(BANDS), nodata=np.nan, tiled=True,
        blockxsize=224, blockysize=224, compress="deflate", predictor=3, interleave="band",
        bigtiff="IF_SAFER",
    )  # fmt: skip
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)


def child(mode: str, scene: str, out: str) -> None:
    t0 = time.perf_counter()
    {"engine": run_engine, "plain": run_plain}[mode](scene, out)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_mb}))


def measure(mode: str, scene: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(scene), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


# --- the big scene ----------------------------------------------------------------------------
def tiled_scene(folder: Path, n: int) -> Path:
    """One VRT per band, each the band file repeated n x n times (same origin and pixel size)."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    for band in BANDS:
        src_path = SCENE / f"{band}.tif"
        with rasterio.open(src_path) as src:
            w, h, t, dtype = src.width, src.height, src.transform, src.dtypes[0]
            crs = src.crs.to_wkt()
        sources = "".join(
            f"""<SimpleSource><SourceFilename relativeToVRT="0">{src_path}</SourceFilename>
            <SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>
            <DstRect xOff="{j * w}" yOff="{i * h}" xSize="{w}" ySize="{h}"/></SimpleSource>"""
            for i in range(n)
            for j in range(n)
        )
        gdal_type = {"uint16": "UInt16", "int16": "Int16"}[dtype]
        (folder / f"{band}.vrt").write_text(
            f"""<VRTDataset rasterXSize="{w * n}" rasterYSize="{h * n}">
  <SRS>{crs.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")}</SRS>
  <GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>
  <VRTRasterBand dataType="{gdal_type}" band="1">{sources}</VRTRasterBand>
</VRTDataset>"""
        )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=10, help="n x n tiling for the memory run")
    parser.add_argument("--repeat", type=int, default=2, help="timing repeats (best of)")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "SCENE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        tmp = Path(tmp)
        plain = [measure("plain", SCENE, tmp / "plain.tif") for _ in range(args.repeat)]
        engine = [measure("engine", SCENE, tmp / "engine.tif") for _ in range(args.repeat)]
        t_plain = min(r["wall_s"] for r in plain)
        t_engine = min(r["wall_s"] for r in engine)
        small_peak = max(r["peak_rss_mb"] for r in engine)
        print("Virginia L1C 1933x1947x13, chip 256 / overlap 32, deflate float32")
        plain_peak = plain[0]["peak_rss_mb"]
        print(f"  plain rasterio read+write : {t_plain:7.2f} s  (peak RSS {plain_peak:.0f} MB)")
        print(f"  geocopgen chip+mosaic     : {t_engine:7.2f} s  (peak RSS {small_peak:.0f} MB)")
        print(f"  wall-time ratio           : {t_engine / t_plain:7.2f}x   (target <= 1.5x)")

        big = tiled_scene(tmp / "big", args.tiles)
        import rasterio

        with rasterio.open(big / "B02.vrt") as ds:
            size = f"{ds.width}x{ds.height}"
        t0 = time.perf_counter()
        large = measure("engine", big, tmp / "big.tif")
        wall = time.perf_counter() - t0
        ratio = large["peak_rss_mb"] / small_peak
        print(f"Tiled {args.tiles}x{args.tiles}: {size} px x 13 bands ({wall:.0f} s)")
        print(f"  peak RSS                  : {large['peak_rss_mb']:7.0f} MB   (limit 1536 MB)")
        print(f"  vs the small run          : {ratio:7.2f}x   (limit 1.20x)")


if __name__ == "__main__":
    main()
