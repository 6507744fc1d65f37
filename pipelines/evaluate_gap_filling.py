"""Gap filling scored where the truth is known: real cloud shapes laid over clear scenes.

    python pipelines/evaluate_gap_filling.py [--json out.json]             # the bundled model
    python pipelines/evaluate_gap_filling.py --lopo --steps 150 [--json]   # leave-one-place-out

The places are the shared rasters with a clear Sentinel-2 scene beside Sentinel-1 on one grid:
three TerraMind tiles (L2A; the fourth, the Brazil coast, is cloudy: its clouds are the shapes)
and the Sen1Floods11 chip (L1C). Three masks per place, all with seed 0:

* **small holes**: 40 squares of 4-8 px (40-80 m), gaps and small clouds;
* **clouds**: the real cloud shape of the cloudy Brazil-coast L1C tile (bright-blue test,
  :mod:`geocopgen.evaluation.cloud_shapes`), tiled over the place: clouds of 100 m to 1 km;
* **large clouds**: the same shape grown by 12 px (120 m): half of the scene or more.

Each place is filled three ways through ``geocopgen.fill`` with S1 as the condition: the model
(``method="model"``), GDAL's inverse-distance fill and the per-pixel S1 → S2 ridge fitted on the
scene's clear pixels. Scored inside the mask on the pixels valid in the truth: reflectance MAE per
band group (10 m: B02 B03 B04 B08; 20 m: B05 B06 B07 B8A B11 B12; 60 m: B01 B09, and B10 in L1C)
and the spectral angle (SAM, degrees, all bands).

The bundled model was trained on these places, so its row is in-sample. ``--lopo`` refits the
recipe without the place (codecs, first guess and a backbone of ``--steps`` steps, fewer than
the shipped model's) and fills the place with that fold, as pipelines/lopo_default_model.py does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_places

import geocopgen
from geocopgen.api import open_inputs
from geocopgen.evaluation.cloud_shapes import bright_cloud_shape, write_mask
from geocopgen.raster.grid import grid_of
from geocopgen.translation.fill_mask import dilate
from geocopgen.translation.fill_output import Stored

DATA = shared_places.DATA
#: Place → (S2 file, S1 file).
PLACES = {
    **{
        tile: (DATA / "terramind" / "S2L2A" / f"{tile}.tif",
               DATA / "terramind" / "S1RTC" / f"{tile}.tif")
        for tile in ("38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3")
    },
    shared_places.SPAIN: (DATA / "s1s2" / shared_places.SPAIN / "S2L1C_13bands.tif",
                          DATA / "s1s2" / shared_places.SPAIN / "S1GRD_VV_VH_dB.tif"),
}  # fmt: skip
CLOUDY_L1C = DATA / "terramind" / "S2L1C" / "282D_485L_3_3.tif"
GROUPS = {
    "10m": ("B02", "B03", "B04", "B08"),
    "20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "60m": ("B01", "B09", "B10"),
}
METHODS = ("model", "interpolate", "ridge")


def masks(shape: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """The three masks of a place of ``shape`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    holes = np.zeros(shape, dtype=bool)
    for _ in range(40):
        size = int(rng.integers(4, 9))
        r, c = (int(rng.integers(0, n - size)) for n in shape)
        holes[r : r + size, c : c + size] = True
    cloud = bright_cloud_shape(CLOUDY_L1C)
    reps = (-(-shape[0] // cloud.shape[0]), -(-shape[1] // cloud.shape[1]))
    clouds = np.tile(cloud, reps)[: shape[0], : shape[1]]
    return {"small holes": holes, "clouds": clouds, "large clouds": dilate(clouds, 12)}


def scores(pred: np.ndarray, true: np.ndarray, bands: list[str], where: np.ndarray) -> dict:
    """Reflectance MAE per band group and SAM (degrees) over ``where``."""
    ok = where & np.isfinite(true).all(0) & np.isfinite(pred).all(0)
    p, t = pred[:, ok].astype(np.float64), true[:, ok].astype(np.float64)
    out: dict[str, float] = {}
    for group, names in GROUPS.items():
        index = [bands.index(b) for b in names if b in bands]
        out[f"mae_{group}"] = float(np.abs(p[index] - t[index]).mean())
    cos = (p * t).sum(0) / np.maximum(np.linalg.norm(p, axis=0) * np.linalg.norm(t, axis=0), 1e-12)
    out["sam_deg"] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
    out["pixels"] = int(ok.sum())
    return out


def evaluate_place(place: str, model: object, folder: Path) -> dict:
    """Every mask x method of one place."""
    s2_path, s1_path = PLACES[place]
    opened = next(iter(open_inputs(s2_path).values()))
    array, stored = opened.array, Stored.of(opened)
    bands = [str(b) for b in array.band.values]
    true = np.asarray(array.values, dtype=np.float32)
    out: dict[str, dict] = {}
    for label, mask in masks(true.shape[1:]).items():
        path = write_mask(mask, grid_of(array), folder / f"{place}_{label}.tif")
        for method in METHODS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = geocopgen.fill(s2_path, cond={"s1rtc": s1_path}, mask=path,
                                        method=method, model=model, progress=False)  # fmt: skip
            pred = stored.physical(np.asarray(result.filled.values))
            out.setdefault(label, {})[method] = scores(pred, true, bands, mask)
            print(f"{place:28s} {label:13s} {method:12s} "
                  + " ".join(f"{k}={v:.4f}" for k, v in out[label][method].items()
                             if k != "pixels"), flush=True)  # fmt: skip
    return out


def lopo_model(place: str, steps: int, work: Path) -> object:
    """The recipe refitted without ``place`` (a backbone of ``steps`` steps)."""
    from train_default_model import SETTINGS, build_model

    train = [p for p in shared_places.all_places(log=lambda _: None) if p.name != place]
    model, _ = build_model(train, work / place, replace(SETTINGS, max_steps=steps))
    return model


def report(results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """A Markdown table: per mask and method, each score averaged over the places."""
    lines = ["| mask | method | MAE 10 m | MAE 20 m | MAE 60 m | SAM (deg) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    labels = next(iter(results.values())).keys()
    for label in labels:
        for method in METHODS:
            rows = [results[p][label][method] for p in results]
            mean = {k: np.mean([r[k] for r in rows]) for k in rows[0] if k != "pixels"}
            lines.append(f"| {label} | {method} | {mean['mae_10m']:.4f} | {mean['mae_20m']:.4f} "
                         f"| {mean['mae_60m']:.4f} | {mean['sam_deg']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--places", nargs="*", default=list(PLACES))
    parser.add_argument("--lopo", action="store_true", help="a fold without each place")
    parser.add_argument("--steps", type=int, default=150, help="backbone steps per fold")
    parser.add_argument("--work", type=Path, default=Path("work") / "fill_lopo")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for place in args.places:
            model = lopo_model(place, args.steps, args.work) if args.lopo else "default"
            results[place] = evaluate_place(place, model, Path(tmp))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps({"lopo": args.lopo, "steps": args.steps,
                                         "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
