"""Benchmark: gap filling against translating the whole scene, on the Virginia L1C scene.

    python bench/bench_fill.py [--crop 0] [--steps model] [--cover 0.4]

A large synthetic mask (smooth random blobs covering ``--cover`` of the scene, seed 0) is laid
over the scene, which is filled with the bundled model (``--method model``) and, for comparison,
translated whole into L2A (the same three Sentinel-2 canvases generated). Each mode runs in its
own process, so peak RSS is its own, and reports wall time, seconds per megapixel of the scene
and per megapixel filled, and peak RSS. The filling also writes the input back (composition,
inverse-distance matching): its overhead over the translation is what this measures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIRGINIA = REPO / ".." / "shared" / "data" / "s2" / "virginia_L1C"


def blob_mask(shape: tuple[int, int], cover: float, seed: int = 0):
    """Smooth random blobs covering about ``cover`` of ``shape`` (True = fill)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.standard_normal((1, 1, shape[0] // 32 + 2, shape[1] // 32 + 2)))
    field = torch.nn.functional.interpolate(coarse, scale_factor=32, mode="bicubic")[0, 0]
    field = field[: shape[0], : shape[1]].numpy()
    return field > np.quantile(field, 1 - cover)


def run_mode(mode: str, crop: int, cover: float, steps: int | None) -> dict:
    """One mode in this process."""
    import numpy as np
    import rasterio

    import geocopgen
    from geocopgen.api import open_inputs
    from geocopgen.evaluation.cloud_shapes import write_mask
    from geocopgen.raster.grid import grid_of

    warnings.simplefilter("ignore")
    source = VIRGINIA
    array = next(iter(open_inputs(source).values())).array
    if crop:
        array = array.isel(y=slice(0, crop), x=slice(0, crop))
    grid = grid_of(array)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.tif"
        clock = time.perf_counter()
        if mode == "fill":
            mask = write_mask(blob_mask(grid.shape, cover), grid, Path(tmp) / "mask.tif")
            geocopgen.fill(array, mask=mask, output=out, steps=steps, progress=False)
            with rasterio.open(mask) as src:
                filled = float(np.count_nonzero(src.read(1))) / 1e6
        else:
            geocopgen.translate(array, "s2l2a", output=out, steps=steps, progress=False)
            filled = grid.width * grid.height / 1e6
        seconds = time.perf_counter() - clock
    megapixels = grid.width * grid.height / 1e6
    return {
        "mode": mode, "seconds": seconds, "megapixels": megapixels, "filled_mp": filled,
        "s_per_mp": seconds / megapixels, "s_per_filled_mp": seconds / filled,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=0, help="a square crop of N px (0: all)")
    parser.add_argument("--cover", type=float, default=0.4, help="share of the scene masked")
    parser.add_argument("--steps", type=int, default=None, help="solver calls (model default)")
    parser.add_argument("--mode", choices=("fill", "translate"), default=None)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.crop, args.cover, args.steps)))
        return
    rows = []
    for mode in ("translate", "fill"):
        cmd = [sys.executable, __file__, "--mode", mode, "--crop", str(args.crop),
               "--cover", str(args.cover)]  # fmt: skip
        cmd += ["--steps", str(args.steps)] if args.steps else []
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"{'mode':10s} {'MPx':>6s} {'filled':>7s} {'s':>7s} {'s/MPx':>7s} "
          f"{'s/filled MPx':>13s} {'peak RSS MB':>12s}")  # fmt: skip
    for r in rows:
        print(f"{r['mode']:10s} {r['megapixels']:6.2f} {r['filled_mp']:7.2f} "
              f"{r['seconds']:7.1f} {r['s_per_mp']:7.1f} {r['s_per_filled_mp']:13.1f} "
              f"{r['peak_rss_mb']:12.0f}")  # fmt: skip
    fill, whole = rows[1], rows[0]
    print(f"fill / translate wall time: {fill['seconds'] / whole['seconds']:.2f}")


if __name__ == "__main__":
    main()
