"""Major TOM grid lookup rate: cells per second for a country-sized bbox, points per second.

python bench/bench_grid.py
"""

from __future__ import annotations

import resource
import time

import numpy as np

from geocopgen.sources.majortom_grid import MajorTOMGrid, get_grid

FRANCE = (-5.2, 41.3, 9.6, 51.1)


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    t_build, _ = best_of(lambda: MajorTOMGrid(10.0), 1)
    grid = get_grid()
    t_cells, cells = best_of(lambda: grid.cells_in_bbox(FRANCE))
    t_gdf, _gdf = best_of(lambda: grid.to_geodataframe(cells))
    rng = np.random.default_rng(0)
    lats, lons = rng.uniform(-80, 80, 1_000_000), rng.uniform(-180, 180, 1_000_000)
    t_pts, _ = best_of(lambda: grid.rowcol(lats, lons))
    n = len(cells)
    print(f"grid construction (10 km):         {t_build * 1e3:8.1f} ms")
    print(f"France bbox {FRANCE}: {n} cells")
    print(
        f"  bbox -> cell ids:                {n / t_cells:12,.0f} cells/s ({t_cells * 1e3:.1f} ms)"
    )
    print(f"  cell ids -> GeoDataFrame:        {n / t_gdf:12,.0f} cells/s ({t_gdf * 1e3:.1f} ms)")
    print(f"  end to end (cells_in_bbox):      {n / (t_cells + t_gdf):12,.0f} cells/s")
    print(f"point -> cell (1M random points):  {1e6 / t_pts:12,.0f} points/s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
