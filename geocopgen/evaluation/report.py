"""``evaluate``: translate held-out places and score them in physical units beside two baselines.

For every *direction* (condition modalities → one target modality) and every test place, the
model draws ``num_samples`` translations. Scores, all in the target's physical units:

* **paired** metrics of the per-pixel mean of the samples against the observed raster:
  DEM MAE/RMSE in metres, absolute and after removing each chip's mean difference (an S2 → DEM
  model cannot know the absolute height of a plateau); S1 MAE in dB per band; S2 reflectance MAE,
  PSNR and SSIM per band group (10 m: B02 B03 B04 B08; 20 m: B05 B06 B07 B8A B11 B12; 60 m: B01
  B09 B10). Plus the best-of-N MAE, and the **spread** (mean per-pixel standard deviation over
  the samples), because modality translation is one-to-many;
* **distribution** metrics of all samples pooled over places against all observed pixels:
  per-band Wasserstein distance, MMD between pixel spectra, spectral-range coverage;
* FID, precision and recall when a local feature extractor is given for the target
  (:mod:`geocopgen.evaluation.features`), on 32 px patches.

Every direction is also scored for two predictors fitted on the *training* places' pixels only:
the training-set mean of each target band, and a per-pixel linear regression from the condition
bands to the target bands. Per place numbers are averaged with equal weight per place.

Translation goes through one function (``translator``, by default the seamless raster
translator :func:`geocopgen.translation.translate_arrays`), so scoring never depends on how the
samples were made and tests can inject translators with known answers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from geocopgen.baselines import LinearBaseline, MeanBaseline
from geocopgen.errors import ConfigError, ModalityError, OutputError
from geocopgen.evaluation.features import extract_features, frechet_distance, precision_recall
from geocopgen.evaluation.metrics import (
    mae,
    mmd_rbf,
    psnr,
    rmse,
    spectral_range_coverage,
    ssim,
    wasserstein_1d,
)
from geocopgen.modalities import OFFICIAL_ORDER, Modality, get_modality

__all__ = [
    "Direction",
    "DirectionResult",
    "EvaluationReport",
    "default_directions",
    "default_translator",
    "distribution_metrics",
    "evaluate",
    "paired_metrics",
    "place_arrays",
]

#: Sentinel-2 band groups by native resolution, as COP-GEN groups them.
S2_GROUPS = {"10m": 10.0, "20m": 20.0, "60m": 60.0}
PATCH = 32  # side of the patches that feature-based metrics compare
PREDICTORS = ("model", "mean_baseline", "linear_baseline")

Translator = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Direction:
    """Condition modalities → one target, written ``"s2l2a+s1rtc->dem"``."""

    conditions: tuple[str, ...]
    target: str

    @classmethod
    def parse(cls, text: str) -> Direction:
        left, sep, right = text.replace("→", "->").partition("->")
        if not sep or not left.strip() or not right.strip():
            raise ConfigError(f"direction {text!r}: write it as COND[+COND...]->TARGET")
        conditions = tuple(get_modality(c.strip()).name for c in left.split("+"))
        target = get_modality(right.strip()).name
        if target in conditions:
            raise ConfigError(f"direction {text!r}: {target} is both a condition and the target")
        return cls(conditions, target)

    def __str__(self) -> str:
        return f"{'+'.join(self.conditions)}->{self.target}"


def default_directions(modalities: Sequence[str]) -> list[Direction]:
    """Every single modality → every other, and all the others together → each target."""
    mods = sorted({get_modality(m).name for m in modalities}, key=OFFICIAL_ORDER.index)
    out = []
    for target in mods:
        others = tuple(m for m in mods if m != target)
        out += [Direction((c,), target) for c in others]
        if len(others) > 1:
            out.append(Direction(others, target))
    return out


# --- translation ------------------------------------------------------------------------------
def default_translator() -> Translator:
    """The seamless raster translator, arrays in and arrays out (any size; see
    :func:`geocopgen.translation.translate_arrays`, and for a COP-GEN model
    :func:`geocopgen.translation.grouped_output.translate_arrays_copgen`)."""
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.translation import translate_arrays
    from geocopgen.translation.grouped_output import translate_arrays_copgen

    def translator(pipeline: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if isinstance(pipeline, CopgenModel):
            return translate_arrays_copgen(pipeline, *args, **kwargs)
        return translate_arrays(pipeline, *args, **kwargs)

    return translator


# --- metrics ----------------------------------------------------------------------------------
def _band_groups(modality: Modality) -> dict[str, list[int]]:
    groups = {
        label: [i for i, band in enumerate(modality.bands) if band.resolution == res]
        for label, res in S2_GROUPS.items()
    }
    return {label: idx for label, idx in groups.items() if idx}


def paired_metrics(
    modality: str | Modality, pred: np.ndarray, true: np.ndarray
) -> dict[str, float]:
    """The modality's paired metrics of one ``(C, H, W)`` prediction (see module docstring)."""
    m = get_modality(modality)
    if m.name == "dem":
        return {
            "mae_m": float(mae(pred, true)[0]),
            "rmse_m": float(rmse(pred, true)[0]),
            "mae_demeaned_m": float(mae(pred, true, demean=True)[0]),
            "rmse_demeaned_m": float(rmse(pred, true, demean=True)[0]),
        }
    if m.name == "s1rtc":
        per_band = mae(pred, true)
        out = {"mae_db": float(np.nanmean(per_band))}
        out.update({f"mae_db_{b}": float(v) for b, v in zip(m.band_names, per_band, strict=True)})
        return out
    err, peak, sim = mae(pred, true), psnr(pred, true), ssim(pred, true)
    out = {}
    for label, idx in _band_groups(m).items():
        out[f"mae_{label}"] = float(np.nanmean(err[idx]))
        out[f"psnr_{label}"] = float(np.nanmean(peak[idx]))
        out[f"ssim_{label}"] = float(np.nanmean(sim[idx]))
    return out


def primary_error(modality: str | Modality, pred: np.ndarray, true: np.ndarray) -> float:
    """One MAE over all bands (physical units), the best-of-N criterion."""
    return float(np.nanmean(mae(pred, true)))


def distribution_metrics(
    modality: str | Modality, generated: np.ndarray, real: np.ndarray
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(summary, per band) distribution metrics of ``(C, ...)`` value sets."""
    m = get_modality(modality)
    w = wasserstein_1d(generated, real)
    cov = spectral_range_coverage(generated, real)
    summary = {
        "wasserstein": float(np.nanmean(w)),
        "mmd": mmd_rbf(generated, real),
        "range_coverage": float(np.nanmean(cov)),
    }
    per_band = {
        "bands": list(m.band_names),
        "wasserstein": [float(v) for v in w],
        "range_coverage": [float(v) for v in cov],
    }
    return summary, per_band


def _patches(images: Sequence[np.ndarray], modality: Modality) -> np.ndarray:
    """Non-overlapping ``PATCH`` px patches of ``(C, H, W)`` rasters, normalised, NaN → 0."""
    out = []
    for a in images:
        x = modality.model_input(np.array(a, dtype=np.float32))
        for r in range(0, x.shape[1] - PATCH + 1, PATCH):
            for c in range(0, x.shape[2] - PATCH + 1, PATCH):
                out.append(x[:, r : r + PATCH, c : c + PATCH])
    return np.stack(out).astype(np.float32)


def feature_metrics(
    extractor: torch.nn.Module,
    modality: Modality,
    generated: list[np.ndarray],
    real: list[np.ndarray],
) -> dict[str, float]:
    fr = extract_features(extractor, _patches(real, modality))
    fg = extract_features(extractor, _patches(generated, modality))
    precision, recall = precision_recall(fr, fg)
    return {"fid": frechet_distance(fr, fg), "precision": precision, "recall": recall}


# --- the report -------------------------------------------------------------------------------
@dataclass
class DirectionResult:
    """Scores of one direction: ``metrics[predictor][name]``, predictors as in ``PREDICTORS``."""

    direction: str
    places: list[str]
    metrics: dict[str, dict[str, float]]
    per_band: dict[str, dict[str, list]] = field(default_factory=dict)


@dataclass
class EvaluationReport:
    """All directions plus what was evaluated how; ``table()`` for people, JSON for machines."""

    directions: list[DirectionResult]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "directions": [asdict(d) for d in self.directions]}

    def write_json(self, path: str | Path) -> Path:
        """Write the JSON report atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(_jsonable(self.to_dict()), f, indent=2)
            os.replace(tmp, path)
        except OSError as err:
            raise OutputError(f"{path}: cannot write the evaluation report ({err})") from err
        return path

    def table(self) -> str:
        """A plain-text table: one block per direction, model beside both baselines."""
        m = self.meta
        lines = [
            f"model {m.get('model')}: {m.get('num_samples')} samples, "
            f"{m.get('num_inference_steps')} steps, seed {m.get('seed')}",
            f"test places: {', '.join(m.get('test_places', []))}",
            f"baselines fitted on: {', '.join(m.get('train_places', []))}"
            + (" (in-sample: no held-out training places)" if m.get("baselines_in_sample") else ""),
        ]
        header = f"  {'metric':<18}{'model':>12}{'mean':>12}{'linear':>12}"
        for d in self.directions:
            lines += ["", f"{d.direction}  ({len(d.places)} places)", header]
            names = list(d.metrics["model"])
            for name in names:
                row = [d.metrics.get(p, {}).get(name) for p in PREDICTORS]
                cells = "".join(f"{_fmt(v):>12}" for v in row)
                lines.append(f"  {name:<18}{cells}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if not np.isfinite(v):
        return "nan"
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- evaluate ---------------------------------------------------------------------------------
def place_arrays(places: Sequence[Any]) -> dict[str, dict[str, np.ndarray]]:
    """``{place name: {modality: (C, H, W) float32 physical}}`` from :class:`Place` objects."""
    return {
        p.name: {m: np.asarray(a.values, np.float32) for m, a in p.arrays.items()} for p in places
    }


def _fit_baselines(
    train: Mapping[str, Mapping[str, np.ndarray]], direction: Direction
) -> tuple[MeanBaseline, LinearBaseline]:
    usable = [
        p for p in train.values() if direction.target in p and set(direction.conditions) <= set(p)
    ]
    if not usable:
        raise ConfigError(f"no training place has every modality of {direction} to fit baselines")
    targets = [p[direction.target] for p in usable]
    conds = [np.concatenate([p[c] for c in direction.conditions]) for p in usable]
    return MeanBaseline().fit(targets), LinearBaseline().fit(conds, targets)


def _mean_over_places(values: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([v[k] for v in values])) for k in values[0]}


def evaluate_direction(
    pipeline: Any,
    direction: Direction,
    test: Mapping[str, Mapping[str, np.ndarray]],
    train: Mapping[str, Mapping[str, np.ndarray]],
    *,
    num_samples: int,
    num_inference_steps: int | None,
    seed: int,
    extractor: torch.nn.Module | None = None,
    translator: Translator | None = None,
    precision: str = "auto",
) -> DirectionResult:
    """Score one direction on every test place (model, mean baseline, linear baseline)."""
    target = get_modality(direction.target)
    translator = translator or default_translator()
    mean_bl, linear_bl = _fit_baselines(train, direction)
    names = [
        n for n, p in test.items() if direction.target in p and set(direction.conditions) <= set(p)
    ]
    if not names:
        raise ConfigError(f"no test place has every modality of {direction}")
    paired: dict[str, list[dict[str, float]]] = {p: [] for p in PREDICTORS}
    pooled: dict[str, list[np.ndarray]] = {p: [] for p in PREDICTORS}
    generated_images: list[np.ndarray] = []
    real_images = []
    for k, name in enumerate(names):
        place = test[name]
        true = place[direction.target]
        conds = {c: place[c] for c in direction.conditions}
        samples = translator(
            pipeline,
            conds,
            direction.target,
            num_samples=num_samples,
            seed=seed + 1000 * k,
            num_inference_steps=num_inference_steps,
            precision=precision,
        )
        mean_pred = samples.mean(axis=0)
        stats = paired_metrics(target, mean_pred, true)
        stats["best_of_n_mae"] = min(primary_error(target, s, true) for s in samples)
        stats["spread"] = float(np.nanmean(samples.std(axis=0))) if num_samples > 1 else 0.0
        paired["model"].append(stats)
        pooled["model"].append(np.concatenate([s.reshape(s.shape[0], -1) for s in samples], 1))
        generated_images += list(samples)
        real_images.append(true)
        cond_stack = np.concatenate([conds[c] for c in direction.conditions])
        baseline_preds = {
            "mean_baseline": mean_bl.predict(true),
            "linear_baseline": linear_bl.predict(cond_stack),
        }
        for label, pred in baseline_preds.items():
            s = paired_metrics(target, pred, true)
            s["best_of_n_mae"] = primary_error(target, pred, true)
            s["spread"] = 0.0
            paired[label].append(s)
            pooled[label].append(pred.reshape(pred.shape[0], -1))
    real = np.concatenate([t.reshape(t.shape[0], -1) for t in real_images], 1)
    metrics, per_band = {}, {}
    for label in PREDICTORS:
        summary, bands = distribution_metrics(target, np.concatenate(pooled[label], 1), real)
        metrics[label] = {**_mean_over_places(paired[label]), **summary}
        per_band[label] = bands
    if extractor is not None:
        baseline_images = {
            "mean_baseline": [mean_bl.predict(t) for t in real_images],
            "linear_baseline": [
                linear_bl.predict(np.concatenate([test[n][c] for c in direction.conditions]))
                for n in names
            ],
        }
        metrics["model"].update(feature_metrics(extractor, target, generated_images, real_images))
        for label, imgs in baseline_images.items():
            metrics[label].update(feature_metrics(extractor, target, imgs, real_images))
    return DirectionResult(str(direction), names, metrics, per_band)


def evaluate(
    pipeline: Any,
    test_places: Sequence[Any],
    train_places: Sequence[Any] = (),
    *,
    directions: Sequence[Direction | str] | None = None,
    num_samples: int = 4,
    num_inference_steps: int | None = None,
    seed: int = 0,
    features: Mapping[str, torch.nn.Module] | None = None,
    translator: Translator | None = None,
    model_name: str = "",
    progress: bool = True,
    precision: str = "auto",
) -> EvaluationReport:
    """Evaluate ``pipeline`` on ``test_places`` (:class:`~geocopgen.latents.Place` objects).

    Baselines are fitted on ``train_places``; with none, on the test places themselves, which
    the report flags as in-sample. ``features`` maps a target modality to a local feature
    extractor (:func:`~geocopgen.evaluation.features.load_feature_extractor`). ``precision``
    is the translations' (:mod:`geocopgen.precision`), recorded in the report.
    """
    if not test_places:
        raise ConfigError("nothing to evaluate: no test place")
    translator = translator or default_translator()
    test = place_arrays(test_places)
    in_sample = not train_places
    train = test if in_sample else place_arrays(train_places)
    available = set.intersection(*(set(p) for p in test.values())) & set(pipeline.modalities)
    dirs = [Direction.parse(d) if isinstance(d, str) else d for d in directions or []]
    dirs = dirs or default_directions(sorted(available))
    for d in dirs:
        missing = {*d.conditions, d.target} - set(pipeline.modalities)
        if missing:
            raise ModalityError(f"direction {d}: the model has no {', '.join(sorted(missing))}")
    results = []
    for d in tqdm(dirs, desc="evaluate", disable=not progress):
        extractor = (features or {}).get(d.target)
        results.append(
            evaluate_direction(
                pipeline,
                d,
                test,
                train,
                num_samples=num_samples,
                num_inference_steps=num_inference_steps,
                seed=seed,
                extractor=extractor,
                translator=translator,
                precision=precision,
            )
        )
    meta = {
        "model": model_name,
        "num_samples": num_samples,
        "num_inference_steps": num_inference_steps
        or getattr(pipeline, "num_inference_steps", None),
        "seed": seed,
        "precision": precision,
        "test_places": list(test),
        "train_places": list(train),
        "baselines_in_sample": in_sample,
        "translator": f"{translator.__module__}.{translator.__name__}",
        "units": {m: get_modality(m).units for m in sorted({d.target for d in dirs})},
    }
    return EvaluationReport(results, meta)
