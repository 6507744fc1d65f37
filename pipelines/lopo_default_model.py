"""Recipe: leave-one-place-out evaluation of the default-model recipe on the 4 TerraMind places.

    python pipelines/lopo_default_model.py [--steps 300] [--samples 4]

Needs the work folder of ``pipelines/train_default_model.py`` (its autoencoders and latent
store). For each TerraMind place it trains the backbone of the default recipe on the chips of the
other three places only (``data.exclude_places``), then evaluates every direction on the held-out
place, with both baselines fitted on the other three places' pixels.

The autoencoders are shared by the four folds: they were trained on all four places (and on the
other rasters), so the held-out place's *pixels* were seen by the codecs — a leak in the
reconstruction stage, not in the translation (the backbone never saw the held-out place).

Writes ``<work>/lopo/<place>.json`` per fold and ``<work>/lopo/summary.json``, and prints a table
of the mean over folds, per direction.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_default_model.py

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_default_model as recipe

from geocopgen.errors import OffsetWarning
from geocopgen.evaluation.report import PREDICTORS, evaluate
from geocopgen.modalities import OFFICIAL_ORDER
from geocopgen.models import CopGenPipeline

#: What the summary table shows per target (the JSON files hold everything).
SUMMARY_METRICS = {
    "dem": ("mae_m", "rmse_m", "mae_demeaned_m", "rmse_demeaned_m", "spread", "range_coverage"),
    "s1rtc": ("mae_db", "mae_db_VV", "mae_db_VH", "spread", "range_coverage"),
    "s2l1c": ("mae_10m", "psnr_10m", "ssim_10m", "mae_20m", "mae_60m", "spread", "range_coverage"),
    "s2l2a": ("mae_10m", "psnr_10m", "ssim_10m", "mae_20m", "mae_60m", "spread", "range_coverage"),
}


def run_fold(work: Path, place: str, places, store: Path, autoencoders, args) -> dict:
    t0 = time.perf_counter()
    pipeline_dir = recipe.train_backbone_stage(
        work / "lopo",
        store,
        autoencoders,
        name=place,
        exclude_places=[f"{place}*"],
        steps=args.steps,
        depth=args.depth,
    )
    train_seconds = time.perf_counter() - t0
    pipeline = CopGenPipeline.from_pretrained(pipeline_dir)
    test = [p for p in places if p.name == place]
    train = [p for p in places if p.name != place]
    t0 = time.perf_counter()
    report = evaluate(
        pipeline,
        test,
        train,
        num_samples=args.samples,
        num_inference_steps=args.sampler_steps,
        model_name=str(pipeline_dir),
    )
    report.meta.update(
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - t0,
        backbone_steps=args.steps,
    )
    report.write_json(work / "lopo" / f"{place}.json")
    print(report.table(), flush=True)
    return report.to_dict()


def summarise(folds: dict[str, dict]) -> dict:
    """Mean over folds of every metric, per direction and predictor."""
    out: dict[str, dict] = {}
    for fold in folds.values():
        for d in fold["directions"]:
            entry = out.setdefault(d["direction"], {p: {} for p in PREDICTORS})
            for p in PREDICTORS:
                for k, v in d["metrics"][p].items():
                    entry[p].setdefault(k, []).append(np.nan if v is None else v)
    return {
        d: {p: {k: float(np.nanmean(v)) for k, v in m.items()} for p, m in e.items()}
        for d, e in out.items()
    }


def print_summary(summary: dict) -> None:
    print("\nleave-one-place-out, mean over the 4 held-out places (model | mean | linear)")
    for direction, preds in summary.items():
        target = direction.split("->")[1]
        cells = []
        for k in SUMMARY_METRICS[target]:
            vals = [preds[p].get(k, float("nan")) for p in PREDICTORS]
            cells.append(f"{k} " + " | ".join(f"{v:.3g}" for v in vals))
        print(f"{direction:<24} " + ";  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=recipe.work_folder, default=recipe.REPO / "work" / "default-model"
    )
    parser.add_argument("--steps", type=int, default=None, help="Backbone steps per fold.")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sampler-steps", type=int, default=None)
    parser.add_argument("--places", nargs="*", default=None)
    parser.add_argument("--depth", type=int, default=None, help="Backbone depth (default: 8).")
    args = parser.parse_args()
    work = args.work
    autoencoders = {m: work / f"ae_{m}" / "autoencoder" for m in OFFICIAL_ORDER}
    store = work / "latents.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)
        places = recipe.terramind_places()
    folds = {}
    start = time.perf_counter()
    for place in args.places or [p.name for p in places]:
        folds[place] = run_fold(work, place, places, store, autoencoders, args)
    summary = summarise(folds)
    (work / "lopo" / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    print(f"leave-one-place-out wall time: {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
