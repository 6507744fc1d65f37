"""Leave-one-place-out evaluation of the bundled model's recipe, beside trivial baselines.

    python pipelines/lopo_default_model.py [--steps 1200] [--places ...] [--json out.json]
    python pipelines/lopo_default_model.py --report a.json b.json   # tables of earlier runs

For each place with co-registered modalities (the 4 TerraMind tiles and the Sen1Floods11 chip),
the recipe is rerun without that place (codecs, first guess and backbone; ``--steps`` backbone
steps per fold, fewer than the shipped model's, to fit five folds in an hour), and the place's
real rasters are translated through
``geocopgen.translate`` in every direction the place allows, 4 samples (seeds 0-3). Scored in
physical units on each generated slot's native grid, on the pixels valid in the truth:

* the model as the mean of the 4 samples, and best-of-4 (the sample with the lowest error);
* **first guess alone**: the same model with its backbone's output set to zero, so it returns
  its first guess (what the backbone adds is the difference between the two rows);
* **training mean**: each band's mean over the training places that have it;
* **ridge**: a per-pixel ridge regression from the condition's bands (every group, resampled to
  the target's grid) to the target's, fitted on the training places that have both;
* **copy**: the other Sentinel-2 level's same bands (L1C → L2A and back);
* **flat**: for the DEM, a constant (the relief error: each DEM minus its own mean).

Errors: reflectance MAE for Sentinel-2 (all bands, each group weighted by its band count), dB MAE
for Sentinel-1, for the DEM the relief MAE (after removing each mean) and the MAE.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import json
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_places
from train_default_model import SETTINGS, build_model

import geocopgen
from geocopgen.copgen.layout import MODALITY_SLOTS, registry_band
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.places import IMAGE_SLOTS, SlotPlace
from geocopgen.copgen.units import physical_from_model

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 4
#: (condition, target) per kind of place.
DIRECTIONS = {
    "terramind": [("s2l2a", "dem"), ("s2l1c", "s2l2a"), ("s2l2a", "s1rtc"), ("s1rtc", "s2l2a")],
    "spain": [("s1rtc", "s2l1c"), ("s2l1c", "s1rtc")],
}
COPY = {"s2l2a": "s2l1c", "s2l1c": "s2l2a"}
#: Rows that are the model (or its parts), not baselines.
MODEL_ROWS = ("model, mean of 4", "model, each sample", "model, best of 4", "first guess alone")


def source_file(place: str, modality: str) -> Path:
    """The real raster a user would give for ``modality`` at ``place``."""
    if place == shared_places.SPAIN:
        name = "S1GRD_VV_VH_dB.tif" if modality == "s1rtc" else "S2L1C_13bands.tif"
        return shared_places.DATA / "s1s2" / place / name
    folder = shared_places.TERRAMIND_DIRS[modality]
    return shared_places.DATA / "terramind" / folder / f"{place}.tif"


def truth(place: SlotPlace, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A slot's physical values, registry band order, and where they are valid."""
    s = IMAGE_SLOTS[key]
    values = physical_from_model(key, place.pixels[key][None], 0)[0].numpy()
    order = [registry_band(s, b) for b in s.bands]
    return values[[order.index(b) for b in _bands(key)]], place.valid[key].numpy()


def _bands(key: str) -> list[str]:
    s = IMAGE_SLOTS[key]
    names = [registry_band(s, b) for b in s.bands]
    return sorted(names, key=lambda b: (len(b), b)) if key.startswith("S2") else names


# --- baselines --------------------------------------------------------------------------------
def features(place: SlotPlace, modality: str, shape: tuple[int, int]) -> torch.Tensor:
    """Every group of ``modality`` resampled onto a ``shape`` grid, as (pixels, features)."""
    planes = []
    for key in MODALITY_SLOTS[modality]:
        x = place.pixels[key][None]
        mode = "area" if x.shape[-1] >= shape[-1] else "bilinear"
        planes.append(F.interpolate(x, size=shape, mode=mode)[0])
    return torch.cat(planes).reshape(-1, shape[0] * shape[1]).T.double()


def ridge(
    train: Sequence[SlotPlace], cond: str, key: str, alpha: float = 1e-3, *, over_copy: bool = False
) -> np.ndarray:
    """Per-pixel ridge weights (features + 1, bands) from ``cond`` to slot ``key`` (to its
    difference from the other S2 level's same bands with ``over_copy``)."""
    xs, ys = [], []
    for p in train:
        if key in p.pixels and MODALITY_SLOTS[cond][0] in p.pixels:
            y, valid = truth(p, key)
            y = y - copied(p, key) if over_copy else y
            x = features(p, cond, y.shape[1:])
            ok = torch.from_numpy(valid.reshape(-1)) & torch.isfinite(x).all(1)
            xs.append(x[ok])
            ys.append(torch.from_numpy(y.reshape(len(y), -1).T[ok.numpy()]).double())
    x, y = torch.cat(xs), torch.cat(ys)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = x.T @ x + alpha * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, x.T @ y).numpy()


def band_means(train: Sequence[SlotPlace], key: str) -> np.ndarray:
    sums, count = 0.0, 0
    for p in train:
        if key in p.pixels:
            y, valid = truth(p, key)
            sums = sums + y[:, valid].sum(1)
            count += int(valid.sum())
    return np.asarray(sums) / count


# --- scoring ----------------------------------------------------------------------------------
def errors(target: str, pred: np.ndarray, true: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Per-slot error measures (pred and true ``(bands, H, W)``), on the pixels valid in the
    truth and given by the prediction (translation writes nodata where a condition has none)."""
    valid = valid & np.isfinite(pred).all(axis=0)
    p, t = pred[:, valid], true[:, valid]
    out = {"mae": float(np.abs(p - t).mean()), "n_bands": len(t)}
    if target == "dem":
        relief = (p - p.mean()) - (t - t.mean())
        out["relief_mae"] = float(np.abs(relief).mean())
    if target == "s1rtc":
        out["mae_vv"], out["mae_vh"] = (float(np.abs(p[i] - t[i]).mean()) for i in range(2))
    return out


def combine(per_slot: Sequence[dict[str, float]]) -> dict[str, float]:
    """Slot errors into one, each slot weighted by its band count."""
    weights = np.array([e["n_bands"] for e in per_slot], dtype=float)
    keys = set.intersection(*(set(e) for e in per_slot)) - {"n_bands"}
    return {k: float(np.average([e[k] for e in per_slot], weights=weights)) for k in sorted(keys)}


def model_samples(
    model: Path | CopgenModel, place: str, cond: str, target: str, samples: int = SAMPLES
) -> list[dict[str, np.ndarray]]:
    """Translations (seeds 0, 1, ...) of the place's real ``cond`` raster: slot → (bands, H, W)."""
    out = []
    for seed in range(samples):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = geocopgen.translate(source_file(place, cond), target, modality=cond,
                                         model=model, seed=seed, grid="native",
                                         progress=False)  # fmt: skip
        arrays = result if isinstance(result, dict) else {MODALITY_SLOTS[target][0]: result}
        out.append({k: np.asarray(a.sel(band=_bands(k)).values) for k, a in arrays.items()})
    return out


def evaluate_direction(
    model: CopgenModel, held: SlotPlace, train: Sequence[SlotPlace], cond: str, target: str
) -> dict[str, dict[str, float]]:
    keys = MODALITY_SLOTS[target]
    samples = model_samples(model, held.name, cond, target)
    (guessed,) = model_samples(guess_only(model), held.name, cond, target, samples=1)
    rows: dict[str, list[dict[str, float]]] = {}
    for key in keys:
        t, valid = truth(held, key)
        rows.setdefault("first guess alone", []).append(errors(target, guessed[key], t, valid))
        per_sample = [errors(target, s[key], t, valid) for s in samples]
        mean = np.mean([s[key] for s in samples], axis=0)
        rows.setdefault("model, mean of 4", []).append(errors(target, mean, t, valid))
        rows.setdefault("model, each sample", []).append(
            {k: float(np.mean([e[k] for e in per_sample])) for k in per_sample[0]}
        )
        rows.setdefault("_samples", []).append(per_sample)  # best-of-4 picked below
        const = band_means(train, key)[:, None, None] * np.ones_like(t)
        rows.setdefault("training mean", []).append(errors(target, const, t, valid))
        w = ridge(train, cond, key)
        x = features(held, cond, t.shape[1:]).numpy()
        fit = (np.concatenate([x, np.ones((len(x), 1))], 1) @ w).T.reshape(t.shape)
        rows.setdefault("ridge", []).append(errors(target, fit, t, valid))
        if target in COPY and cond == COPY[target]:
            rows.setdefault("copy", []).append(errors(target, copied(held, key), t, valid))
        if target == "dem":
            flat = np.full_like(t, float(t[:, valid].mean()))
            rows.setdefault("flat", []).append(errors(target, flat, t, valid))
    per_sample = rows.pop("_samples")
    best = min(range(SAMPLES), key=lambda i: combine([s[i] for s in per_sample])["mae"])
    rows["model, best of 4"] = [s[best] for s in per_sample]
    return {name: combine(r) for name, r in rows.items()}


def guess_only(model: CopgenModel) -> CopgenModel:
    """A copy of ``model`` that returns its first guess: the backbone's output layers zeroed
    and read as the residual over the guess (``"sample"``), sampled from pure noise."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.backbone.decoder_preds.parameters():
            p.zero_()
    model.prediction, model.strength = "sample", 1.0
    return model


def copied(place: SlotPlace, key: str) -> np.ndarray:
    """The other level's same bands on this slot's grid (L1C's B10 has no L2A twin)."""
    other_mod = COPY["s2l2a" if key.startswith("S2L2A") else "s2l1c"]
    s = IMAGE_SLOTS[key]
    for other in MODALITY_SLOTS[other_mod]:
        if IMAGE_SLOTS[other].resolution == s.resolution:
            values, _ = truth(place, other)
            names = _bands(other)
            return np.stack([values[names.index(b)] for b in _bands(key)])
    raise KeyError(key)


def verdicts(
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    model: str = "model, mean of 4",
) -> str:
    """Per direction and held-out place: does ``model`` (a row) beat every baseline, some, or
    none? Ends with the counts. The DEM is judged on its relief error, the rest on the MAE."""
    lines, every, some, cases = [], 0, 0, 0
    for direction, by_place in results.items():
        target = direction.split("→")[1].strip()
        key = {"dem": "relief_mae"}.get(target, "mae")
        for place, rows in by_place.items():
            mine = rows[model][key]
            baselines = {m: r[key] for m, r in rows.items() if m not in (*MODEL_ROWS, model)}
            lost = [m for m, v in baselines.items() if not mine < v]
            cases += 1
            every += not lost
            some += len(lost) < len(baselines)
            if not lost:
                verdict = "beats every baseline"
            elif len(lost) == len(baselines):
                verdict = "beats no baseline"
            else:
                verdict = f"does not beat {', '.join(lost)}"
            lines.append(f"- {direction}, {place}: {verdict}")
    lines.append(
        f"\n{model}: beats every baseline in {every} of {cases} cases, "
        f"at least one baseline in {some} of {cases}."
    )
    return "\n".join(lines)


def merged(paths: Sequence[Path]) -> dict:
    """Results of several runs (``--json`` files; a later file's place replaces an earlier's)."""
    out: dict = {}
    for path in paths:
        for direction, by_place in json.loads(path.read_text()).items():
            out.setdefault(direction, {}).update(by_place)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--places", nargs="*", default=list(shared_places.PAIRED_PLACES))
    parser.add_argument("--work", type=Path, default=REPO / "work" / "lopo")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--strength", type=float, default=None,
                        help="Sample every fold's model from this strength (default: the "
                        "recipe's); reruns reuse the trained folds.")  # fmt: skip
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="Only print the tables and verdicts of earlier runs' JSON files.",
    )
    args = parser.parse_args(argv)
    if args.report:
        results = merged(args.report)
        print(report(results) + "\n\n" + verdicts(results))
        return
    start = time.perf_counter()
    places = shared_places.all_places(log=lambda _: None)
    results: dict[str, dict] = {}
    for name in args.places:
        held = next(p for p in places if p.name == name)
        train = [p for p in places if p is not held]
        model, _ = build_model(train, args.work / name, replace(SETTINGS, max_steps=args.steps))
        if args.strength is not None:
            model.strength = args.strength
        kind = "spain" if name == shared_places.SPAIN else "terramind"
        for cond, target in DIRECTIONS[kind]:
            rows = evaluate_direction(model, held, train, cond, target)
            results.setdefault(f"{cond} → {target}", {})[name] = rows
            print(f"[lopo] {name} {cond} → {target}: " + "; ".join(
                f"{k} {_headline(target, v)}" for k, v in rows.items()), flush=True)  # fmt: skip
        if args.json:  # after every fold, so a long run keeps what it measured
            args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(report(results) + "\n\n" + verdicts(results))
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min")


def _headline(target: str, row: Mapping[str, float]) -> str:
    if target == "dem":
        return f"relief {row['relief_mae']:.2f} m (MAE {row['mae']:.1f} m)"
    if target == "s1rtc":
        return f"{row['mae_vv']:.2f}/{row['mae_vh']:.2f} dB"
    return f"{row['mae']:.4f}"


def report(results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """One markdown table per direction: rows = methods, columns = held-out places."""
    lines = []
    for direction, by_place in results.items():
        target = direction.split("→")[1].strip()
        names = list(by_place)
        methods = list(next(iter(by_place.values())))
        lines += ["", f"### {direction}", "", "| method | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|"]  # fmt: skip
        for m in methods:
            cells = [_headline(target, by_place[n][m]) if m in by_place[n] else "-" for n in names]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
