"""Benchmark: translate-many throughput on 1, 2 (4) local workers, and the engine's overhead.

    OMP_NUM_THREADS=1 python bench/bench_translate_many.py [--tile 480] [--steps 2]
        [--workers 1 2] [--repeat 3]

Eight tiles are cut from the Virginia Sentinel-2 L1C scene (one band folder each, every band
at its native 10/20/60 m; ``--tile`` px at 10 m, a multiple of 6), and translated to a DEM with
the bundled model. Reported:

* the plain loop (best of ``--repeat`` runs, as every timing): :func:`geocopgen.translate` on
  the tiles one after the other in this process, torch on one thread, the model already loaded
  (what one worker does, without dask);
* for each worker count: translate-many's own LocalCluster of that many one-thread processes
  (:func:`~geocopgen.many.engine.make_client`), warmed with one tile
  (imports and the model load are start-up, not throughput), then :func:`translate_many` over
  the eight tiles: scenes per minute, and at one worker the overhead against the loop;
* the cold run: the same at one worker including starting the cluster.

The figures depend on what else runs on the machine: the script prints the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
VIRGINIA = REPO / ".." / "shared" / "data" / "s2" / "virginia_L1C"


def cut_tiles(folder: Path, tile: int, count: int = 8) -> list[Path]:
    """``count`` band folders of ``tile`` x ``tile`` px (at 10 m) from the Virginia scene, side
    by side in rows of four."""
    tiles = []
    for index in range(count):
        row, col = divmod(index, 4)
        out = folder / f"virginia_{index}"
        out.mkdir(parents=True, exist_ok=True)
        for band in sorted(VIRGINIA.glob("B*.tif")):
            with rasterio.open(band) as src:
                f = 10.0 / src.transform.a  # pixels of this band per 10 m pixel
                size = round(tile * f)
                window = Window(round(col * tile * f), round(row * tile * f), size, size)
                profile = {**src.profile, "width": size, "height": size,
                           "transform": src.window_transform(window)}  # fmt: skip
                with rasterio.open(out / band.name, "w", **profile) as dst:
                    dst.write(src.read(window=window))
        tiles.append(out)
    return tiles


def plain_loop(tiles: list[Path], out: Path, options: dict, repeat: int) -> float:
    """Seconds (the best of ``repeat``) to translate ``tiles`` one after the other here, the
    model loaded beforehand."""
    import torch

    import geocopgen

    torch.set_num_threads(1)
    geocopgen.load_model("default")
    best = float("inf")
    for rep in range(repeat):
        start = time.perf_counter()
        for tile in tiles:
            path = out / f"{tile.name}.{rep}.dem.tif"
            geocopgen.translate(str(tile), "dem", output=path, **options)
        best = min(best, time.perf_counter() - start)
    return best


def engine(tiles: list[Path], out: Path, workers: int, options: dict, repeat: int
           ) -> tuple[float, int, float]:  # fmt: skip
    """Seconds (the best of ``repeat``) for :func:`translate_many` over ``tiles`` on a warmed
    local cluster without the
    catalog, the scenes done, and the seconds that writing the catalog then adds (rio-stac
    reads every output for its statistics)."""
    from geocopgen.many import Scene, translate_many
    from geocopgen.many.catalog import write_catalog
    from geocopgen.many.engine import make_client

    client, cluster = make_client(workers=workers)
    with cluster, client:
        translate_many(tiles[:1], "dem", out / "warm", client=client, **options)
        seconds = float("inf")
        for rep in range(repeat):
            start = time.perf_counter()
            report = translate_many(tiles, "dem", out / f"w{workers}_{rep}", client=client,
                                    catalog=False, **options)  # fmt: skip
            seconds = min(seconds, time.perf_counter() - start)
    start = time.perf_counter()
    scenes = [Scene(p.name, str(p)) for p in tiles]
    write_catalog(out / f"w{workers}_0", scenes, report.results, report.properties)
    return seconds, report.count("done"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", type=int, default=480)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    args = parser.parse_args()
    if args.tile % 6 or args.tile > 480:
        parser.error("--tile: a multiple of 6 (the 60 m bands), at most 480 (4 x 2 tiles)")
    options = {"steps": args.steps, "s2_offset": 0, "progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiles = cut_tiles(root / "tiles", args.tile)
        print(f"8 Virginia S2 L1C tiles of {args.tile} px -> DEM, bundled model, --steps "
              f"{args.steps}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at "
              "start")  # fmt: skip
        from geocopgen.many import translate_many

        start = time.perf_counter()
        cold = translate_many(tiles, "dem", root / "cold", workers=1, **options)
        cold_s = time.perf_counter() - start
        assert cold.count("done") == 8, cold.summary()
        loop = plain_loop(tiles, root, options, args.repeat)
        print(f"plain loop, 1 process:      {loop:6.1f} s  {8 / loop * 60:5.1f} scenes/min")
        for workers in args.workers:
            seconds, done, catalog = engine(tiles, root, workers, options, args.repeat)
            rate = done / seconds * 60
            line = f"translate-many, {workers} worker(s): {seconds:6.1f} s  {rate:5.1f} scenes/min"
            if workers == 1:
                line += f"  overhead vs loop {seconds / loop - 1:+.1%}"
            print(line + f"  (+{catalog:.1f} s to write the catalog)")
        print(f"cold (cluster start, imports, model load included), 1 worker: {cold_s:.1f} s")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
