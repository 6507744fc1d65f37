"""Benchmark: Sentinel-2 L1C → DEM over the whole Virginia scene with a 4-modality pipeline.

(The bundled model is a COP-GEN model since its rebuild: ``bench_copgen.py --models bundled``.)

    python bench/bench_translate.py [--steps 20] [--batch-size 8] [--crop 0] [--nodata-west 0]
        [--model default] [--backbone ...]

On a machine shared with other busy processes, run it with ``OMP_NUM_THREADS=1``: two torch
threads that keep waiting for each other make every number slower and noisier.

Each mode runs in its own process (so peak RSS is its own) and reports, measured in that run:
wall time; the share of it spent in the backbone, in the autoencoders, and everywhere else
(reading, normalising, blending, scheduler steps, writing: geocopgen's own overhead); peak RSS;
and the seam ratio at chip borders (see ``geocopgen.translation.seams``). Modes:

* ``seamless``: MultiDiffusion, 64 px overlap (the default);
* ``tiles``: seamless blending off: every chip denoised on its own, no overlap.

Targets: backbone share >= 85 %, peak RSS < 2 GB. The last line says how much costlier the
backbone would have to be for the share to reach 85 % with everything else as measured.
``--model`` benches another pipeline folder than the bundled one; ``--nodata-west PX`` masks the
scene's western columns (lazily, ``where``) to time translation next to nodata.
``--backbone default-config`` swaps in a randomly initialised ``MultimodalUViT()`` (the library's
default size) to compare; with the bundled model, whose backbone has that size, the two measure
the same cost.
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
MODES = {"seamless": dict(seamless=True), "tiles": dict(seamless=False, overlap=0)}


class Timer:
    """Seconds spent inside a module's forward, via forward hooks; ``sync`` waits for the GPU
    at both ends, so the seconds are the device's, not the launch's."""

    def __init__(self, *modules, sync: bool = False) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self.sync = sync
        for module in modules:
            module.register_forward_pre_hook(self._enter)
            module.register_forward_hook(self._leave)

    def _wait(self) -> None:
        if self.sync:
            import torch

            torch.cuda.synchronize()

    def _enter(self, *_args) -> None:
        self._wait()
        self._start = time.perf_counter()

    def _leave(self, *_args) -> None:
        self._wait()
        self.seconds += time.perf_counter() - self._start


def worker(mode: str, args: argparse.Namespace) -> dict:
    import rasterio
    import torch

    from geocopgen import api
    from geocopgen.io import grid_of, open_raster
    from geocopgen.translation import CanvasTranslator, TranslateOptions, translate_to_file
    from geocopgen.translation.seams import chip_borders, seam_ratio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = open_raster(VIRGINIA, offset=0)
    if args.crop:
        scene = open_raster(scene.isel(y=slice(0, args.crop), x=slice(0, args.crop)))
    if args.nodata_west:  # a swath edge: the western columns hold no data
        attrs = scene.attrs
        scene = scene.where(scene.x > scene.x[args.nodata_west - 1])
        scene.attrs = attrs
    pipeline = api.load_model(args.model, device="cpu")
    if not hasattr(pipeline, "autoencoders"):
        raise SystemExit(
            f"{args.model} is a COP-GEN model (the bundled one is): this benchmark measures the "
            "4-modality translator; pass --model DIR, or run bench/bench_copgen.py --models bundled"
        )
    if args.backbone == "default-config":
        from geocopgen.models import CopGenPipeline, MultimodalUViT

        torch.manual_seed(0)
        bigger = MultimodalUViT(latent_channels=pipeline.backbone.config.latent_channels)
        pipeline = CopGenPipeline(bigger.eval(), pipeline.scheduler, pipeline.autoencoders)
    backbone = Timer(pipeline.backbone)
    codecs = [pipeline.autoencoders[m] for m in ("s2l1c", "dem")]
    autoencoders = Timer(*[c.encoder for c in codecs], *[c.decoder for c in codecs])
    options = TranslateOptions(
        steps=args.steps, batch_size=args.batch_size, progress=False, **MODES[mode]
    )
    translator = CanvasTranslator(pipeline, "dem", options)
    grid = grid_of(scene)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dem.tif"
        clock = time.perf_counter()
        stats = translate_to_file(translator, grid, {"s2l1c": scene}, out)
        wall = time.perf_counter() - clock
        with rasterio.open(out) as src:
            dem = src.read(1)
    rows, cols = chip_borders(translator.layout(grid, ["s2l1c"]))
    return {
        "mode": mode,
        "size": f"{grid.width}x{grid.height}",
        "chips": stats.latent_chips,
        "steps": stats.steps,
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "backbone_s": backbone.seconds,
        "autoencoders_s": autoencoders.seconds,
        "phases_s": stats.seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seam_ratio": seam_ratio(dem, rows, cols),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=0, help="bench a top-left crop (px); 0: all")
    parser.add_argument("--backbone", choices=["bundled", "default-config"], default="bundled")
    parser.add_argument("--model", default="default", help="pipeline folder (default: bundled)")
    parser.add_argument(
        "--nodata-west", type=int, default=0, metavar="PX",
        help="make the western PX columns nodata, as at a swath edge",
    )  # fmt: skip
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    results = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", mode]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    first = results["seamless"]
    print(
        f"S2L1C -> DEM, Virginia {first['size']} px, {first['chips']} chips of 256 px, "
        f"{first['steps']} steps, batch {args.batch_size}, {first['threads']} torch threads, "
        f"model {args.model}"
        + (
            ", its backbone swapped for a random default-config one"
            if args.backbone != "bundled"
            else ""
        )
    )
    print(f"{'mode':<10}{'wall s':>8}{'backbone':>10}{'autoenc.':>10}{'other':>8}"
          f"{'peak RSS':>11}{'seam ratio':>12}")  # fmt: skip
    for mode, r in results.items():
        wall = r["wall_s"]
        other = wall - r["backbone_s"] - r["autoencoders_s"]
        print(
            f"{mode:<10}{wall:>8.1f}{r['backbone_s'] / wall:>10.1%}"
            f"{r['autoencoders_s'] / wall:>10.1%}{other / wall:>8.1%}"
            f"{r['peak_rss_mb']:>8.0f} MB{r['seam_ratio']:>12.3f}"
        )
    tiles = results["tiles"]
    print(
        f"seamless / tiles: wall x{first['wall_s'] / tiles['wall_s']:.2f}, backbone time "
        f"x{first['backbone_s'] / tiles['backbone_s']:.2f} (overlap: {first['chips']} vs "
        f"{tiles['chips']} chips); seam ratio {first['seam_ratio']:.3f} vs "
        f"{tiles['seam_ratio']:.3f}"
    )
    share = first["backbone_s"] / first["wall_s"]
    print(
        f"targets: backbone share >= 85 %: {share:.1%}; "
        f"peak RSS < 2 GB: {first['peak_rss_mb']:.0f} MB"
    )
    # With the rest of the run unchanged, a backbone k times as costly takes k*b / (k*b + rest).
    needed = 0.85 / 0.15 * (1 - share) / share
    print(f"a backbone {needed:.2f}x as costly as this one, with the same autoencoders and the "
          "same rest, would take 85 % of the time")  # fmt: skip


if __name__ == "__main__":
    main()
