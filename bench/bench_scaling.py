"""Benchmark: how translation scales with the raster size, and how fast errors come.

    python bench/bench_scaling.py [--sizes 2000 5000 10000 20000] [--steps 1] [--to dem]

Part 1, scaling. For each size S, a folder of 13 VRTs tiles the Virginia Sentinel-2 L1C scene
(1947 x 1933 px at 10 m) side by side into an S x S px raster at the scene's own resolution and
origin (each band at its native 10/20/60 m). ``geocopgen translate FOLDER --to dem --steps 1``
runs in its own process on it, streaming to a GeoTIFF; the benchmark reports wall time, seconds
per megapixel, and the process's peak RSS. Memory should stay flat in the raster size apart from
the latent canvases (1/64 of the pixels, a few float32 copies) and the nodata bit mask (1 bit per
pixel); time should grow linearly (the number of chips).

Part 2, start-up. ``import geocopgen`` and ``import geocopgen.api`` in a fresh interpreter, and
the wall time of ``geocopgen translate /nonexistent.tif --to dem -o x.tif`` until it exits with
its error (target < 2 s).

On a machine shared with other busy processes, run it with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parents[1]
VIRGINIA = REPO / ".." / "shared" / "data" / "s2" / "virginia_L1C"


def tiled_vrt(band: Path, size_10m: int, out: Path) -> None:
    """A VRT repeating ``band`` side by side to cover ``size_10m`` px at 10 m (its own pixel
    size scaled), on the band's own origin and CRS."""
    with rasterio.open(band) as src:
        res = src.transform.a
        w, h = src.width, src.height
        size = round(size_10m * 10.0 / res)
        t = src.transform
        dtype = {"uint16": "UInt16", "int16": "Int16", "float32": "Float32"}[src.dtypes[0]]
        nodata = src.nodata
        crs = src.crs.to_wkt()
    tiles = []
    for row in range(0, size, h):
        for col in range(0, size, w):
            tw, th = min(w, size - col), min(h, size - row)
            tiles.append(
                f'<SimpleSource><SourceFilename relativeToVRT="0">{band.resolve()}'
                f"</SourceFilename><SourceBand>1</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{tw}" ySize="{th}"/>'
                f'<DstRect xOff="{col}" yOff="{row}" xSize="{tw}" ySize="{th}"/></SimpleSource>'
            )
    nd = f"<NoDataValue>{nodata}</NoDataValue>" if nodata is not None else ""
    out.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>"
        f'<VRTRasterBand dataType="{dtype}" band="1">{nd}{"".join(tiles)}</VRTRasterBand>'
        "</VRTDataset>"
    )


def scene(size: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for band in sorted(VIRGINIA.glob("B*.tif")):
        tiled_vrt(band, size, folder / f"{band.stem}.vrt")
    return folder


def run_translate(folder: Path, out: Path, args: argparse.Namespace) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one CLI translation in a child process."""
    cmd = [
        "/usr/bin/time", "-f", "MAXRSS_KB %M",
        sys.executable, "-m", "geocopgen", "-q", "translate", str(folder),
        "--to", args.to, "-o", str(out), "--steps", str(args.steps), "--s2-offset", "0",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = re.search(r"MAXRSS_KB (\d+)", proc.stderr)
    rss = int(found.group(1)) / 1024 if found else float("nan")
    tail = "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]
    return wall, rss, tail


def startup() -> None:
    for module in ("geocopgen", "geocopgen.api"):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        print(f"import {module}: {time.perf_counter() - start:.2f} s (fresh interpreter)")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "geocopgen", "translate", "/nonexistent.tif",
               "--to", "dem", "-o", str(Path(tmp) / "x.tif")]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
    first = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    print(f"first error for a missing input: {wall:.2f} s, exit {proc.returncode}: {first}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--to", default="dem")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    startup()
    if args.skip_scaling:
        return
    print(f"\ntranslate S2 L1C -> {args.to}, --steps {args.steps}, tiled Virginia scene")
    print(f"{'size px':>8} {'Mpx':>7} {'wall s':>8} {'s/Mpx':>7} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        for size in args.sizes:
            folder = scene(size, Path(tmp) / f"s{size}")
            wall, rss, error = run_translate(folder, Path(tmp) / f"out{size}.tif", args)
            mpx = size * size / 1e6
            print(f"{size:>8} {mpx:>7.1f} {wall:>8.1f} {wall / mpx:>7.2f} {rss:>12.0f} {error}")
            sys.stdout.flush()
            for f in Path(tmp).glob("out*.tif"):
                f.unlink()


if __name__ == "__main__":
    main()
