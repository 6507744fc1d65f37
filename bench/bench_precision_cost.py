"""What a reduced precision costs: fp32 against bf16 (and fp16) outputs, in physical units.

    OMP_NUM_THREADS=2 python bench/bench_precision_cost.py [--precisions bf16 fp16]
        [--base MODEL_DIR --base-steps 50] [--official FIGURES.json]

Part 1, the bundled model on real rasters: every TerraMind place in ``../shared/data`` (four
places, 224 px at 10 m) translated in four directions (S2 L2A → DEM in metres, S2 L2A → S1 in
dB, S2 L1C → S2 L2A in reflectance, S2 L2A → land cover) at the model's own preset, once per
precision, each compared with the fp32 output of the same call: the largest and the mean
absolute difference over valid pixels (land cover: the share of pixels whose class differs).

Part 2 (``--base``), a full-size model: a COP-GEN model folder (for example the published base
architecture with random weights in the official containers, converted by ``geocopgen convert
copgen``) translating the 192 px centre of the Tanzanian TerraMind S2 L2A tile (one chip, as the
official benchmark reads it) to DEM and S1 at ``--base-steps`` model calls, fp32 against bf16.
``--official`` prints beside it the official code's own fp32-against-autocast difference on the
same chip (a JSON with ``DEM_m`` and ``S1_dB`` entries holding ``max_abs`` and ``mean_abs``).

Ratios from one run; each output is compared with fp32 from the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
TERRAMIND = REPO / ".." / "shared" / "data" / "terramind"
DIRECTIONS = [("S2L2A", "dem", "m"), ("S2L2A", "s1rtc", "dB"), ("S2L1C", "s2l2a", "refl"),
              ("S2L2A", "lulc", "class")]  # fmt: skip
CLASSES = {"lulc"}


def translate(source: Path, to: str, precision: str, out: Path, **options) -> np.ndarray:
    import geocopgen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geocopgen.translate(source, to, output=out, precision=precision, progress=False,
                            overwrite=True, **options)  # fmt: skip
    with rasterio.open(out) as src:
        return src.read().astype(np.float64)


def compare(reference: np.ndarray, other: np.ndarray, classes: bool) -> tuple[float, float]:
    """(largest, mean) absolute difference over pixels valid in both; for classes the share of
    pixels whose class differs, twice."""
    valid = np.isfinite(reference) & np.isfinite(other)
    if classes:
        share = float(np.mean(reference[valid] != other[valid]))
        return share, share
    diff = np.abs(reference[valid] - other[valid])
    return float(diff.max()), float(diff.mean())


def bundled(precisions: list[str], targets: list[str], tmp: Path) -> None:
    print("Part 1: the bundled model, fp32 against each precision, 4 TerraMind places")
    print(f"{'direction':<18}{'unit':<6}{'prec':<6}{'max |diff|':>12}{'mean |diff|':>13}"
          f"{'places':>8}")  # fmt: skip
    places = sorted(p.stem for p in (TERRAMIND / "S2L2A").glob("*.tif"))
    for source_mod, to, unit in (d for d in DIRECTIONS if d[1] in targets):
        worst: dict[str, list[tuple[float, float]]] = {p: [] for p in precisions}
        for place in places:
            source = TERRAMIND / source_mod / f"{place}.tif"
            ref = translate(source, to, "fp32", tmp / "ref.tif")
            for p in precisions:
                worst[p].append(compare(ref, translate(source, to, p, tmp / f"{p}.tif"),
                                        to in CLASSES))  # fmt: skip
        for p in precisions:
            largest = max(m for m, _ in worst[p])
            mean = float(np.mean([m for _, m in worst[p]]))
            label = "differs" if to in CLASSES else unit
            text = (f"{largest:>11.2%} {mean:>12.2%}" if to in CLASSES
                    else f"{largest:>12.4g}{mean:>13.4g}")  # fmt: skip
            print(f"{source_mod.lower() + ' -> ' + to:<18}{label:<6}{p:<6}{text}"
                  f"{len(places):>8}")  # fmt: skip


def centre_chip(tmp: Path) -> Path:
    """The 192 px centre of the Tanzanian S2 L2A tile, as its own GeoTIFF."""
    source = TERRAMIND / "S2L2A" / "38D_378R_2_3.tif"
    out = tmp / "chip_192.tif"
    with rasterio.open(source) as src:
        window = Window(16, 16, 192, 192)
        profile = src.profile | {"width": 192, "height": 192,
                                 "transform": src.window_transform(window)}  # fmt: skip
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.update_tags(**src.tags())
            dst.descriptions = src.descriptions
    return out


def base(folder: Path, steps: int, official: Path | None, tmp: Path) -> None:
    from geocopgen.copgen.model import CopgenModel

    model = CopgenModel.read(folder)
    chip = centre_chip(tmp)
    figures = json.loads(official.read_text()) if official else {}
    print(f"\nPart 2: {folder.name} (full size), one 192 px chip of 38D_378R_2_3, {steps} calls, "
          "fp32 against bf16; beside it the official code's own fp32-against-autocast")  # fmt: skip
    print(f"{'target':<8}{'unit':<6}{'ours max':>11}{'ours mean':>11}{'official max':>14}"
          f"{'official mean':>15}")  # fmt: skip
    for to, unit, key in (("dem", "m", "DEM_m"), ("s1rtc", "dB", "S1_dB")):
        options = {"model": model, "steps": steps, "date": "2021-07-15", "seed": 101}
        ref = translate(chip, to, "fp32", tmp / "b32.tif", **options)
        other = translate(chip, to, "bf16", tmp / "b16.tif", **options)
        largest, mean = compare(ref, other, False)
        theirs = figures.get(key, {})
        print(f"{to:<8}{unit:<6}{largest:>11.4g}{mean:>11.4g}"
              f"{theirs.get('max_abs', float('nan')):>14.4g}"
              f"{theirs.get('mean_abs', float('nan')):>15.4g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp16"])
    parser.add_argument("--base", type=Path, help="a full-size COP-GEN model folder")
    parser.add_argument("--base-steps", type=int, default=50)
    parser.add_argument("--official", type=Path, help="the official code's figures (JSON)")
    parser.add_argument("--skip-bundled", action="store_true")
    parser.add_argument("--targets", nargs="+", default=[d[1] for d in DIRECTIONS],
                        help="part 1's directions, by target")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_bundled:
            bundled(args.precisions, args.targets, Path(tmp))
        if args.base:
            base(args.base, args.base_steps, args.official, Path(tmp))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
