"""What the co-registered places allow: can *any* per-pixel map, chosen without the held-out
place, beat every trivial baseline there?

    python pipelines/lopo_regression_ceiling.py [--json ceiling.json]

The bundled model is scored leave-one-place-out against trivial baselines
(``lopo_default_model.py``). This asks how far that goal is reachable with the data at all. For
each held-out place and direction it picks one *candidate* among simple per-pixel maps, the
baselines included, by the same rule a model's first guess is chosen: the lowest mean error on
the training places, each held out in turn from the others. The chosen candidate is then scored
at the held-out place beside the baselines, exactly as ``lopo_default_model.py`` scores them.

Candidates: each band's training mean; ridge regressions from every band of the condition at
strengths :data:`ALPHAS` (the baseline's is 1e-3); for the two Sentinel-2 levels, copying the
other level and ridge regressions of the difference over the copy. A direction where even this
place-blind choice rarely beats every baseline is one where the best baseline changes from
place to place and the training places cannot tell which one a new place needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_places
from lopo_default_model import (
    COPY,
    DIRECTIONS,
    band_means,
    combine,
    copied,
    errors,
    features,
    report,
    ridge,
    truth,
    verdicts,
)

from geocopgen.copgen.layout import MODALITY_SLOTS
from geocopgen.copgen.places import SlotPlace

#: Ridge strengths tried (relative to the pixel count, as the ridge baseline's 1e-3).
ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
CHOSEN = "place-blind choice"


@dataclass(frozen=True)
class Candidate:
    """A per-pixel map: ``"mean"``, ``"copy"`` or ``"ridge"`` (over the copy if ``over_copy``)."""

    kind: str
    alpha: float = 0.0
    over_copy: bool = False

    @property
    def name(self) -> str:
        if self.kind != "ridge":
            return self.kind
        return f"{'copy + ' if self.over_copy else ''}ridge {self.alpha:g}"

    def predict(
        self, train: Sequence[SlotPlace], held: SlotPlace, cond: str, key: str
    ) -> np.ndarray:
        """The map fitted on ``train``, applied at ``held``: ``(bands, H, W)`` physical."""
        t, _ = truth(held, key)
        if self.kind == "mean":
            return band_means(train, key)[:, None, None] * np.ones_like(t)
        base = copied(held, key) if self.over_copy or self.kind == "copy" else 0.0
        if self.kind == "copy":
            return base
        w = ridge(train, cond, key, self.alpha, over_copy=self.over_copy)
        x = features(held, cond, t.shape[1:]).numpy()
        return base + (np.concatenate([x, np.ones((len(x), 1))], 1) @ w).T.reshape(t.shape)


def candidates(cond: str, target: str) -> list[Candidate]:
    out = [Candidate("mean"), *(Candidate("ridge", a) for a in ALPHAS)]
    if COPY.get(target) == cond:
        out += [Candidate("copy"), *(Candidate("ridge", a, over_copy=True) for a in ALPHAS)]
    return out


def score(
    c: Candidate, train: Sequence[SlotPlace], held: SlotPlace, cond: str, target: str
) -> dict[str, float]:
    """``c``'s errors at ``held`` (every slot of ``target``, combined as the LOPO tables)."""
    per_slot = []
    for key in MODALITY_SLOTS[target]:
        t, valid = truth(held, key)
        per_slot.append(errors(target, c.predict(train, held, cond, key), t, valid))
    return combine(per_slot)


def choose(
    places: Sequence[SlotPlace], held: SlotPlace, cond: str, target: str
) -> tuple[Candidate, dict[str, float]]:
    """The candidate with the lowest mean error over the paired training places, each held out
    from the others (``held`` never seen), and those mean errors."""
    metric = "relief_mae" if target == "dem" else "mae"
    keys = MODALITY_SLOTS[cond] + MODALITY_SLOTS[target]
    paired = [p for p in places if p is not held and all(k in p.pixels for k in keys)]
    means = {}
    for c in candidates(cond, target):
        scores = []
        for inner in paired:
            rest = [p for p in places if p is not held and p is not inner]
            scores.append(score(c, rest, inner, cond, target)[metric])
        means[c] = float(np.mean(scores))
    best = min(means, key=means.__getitem__)
    return best, {c.name: v for c, v in means.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--places", nargs="*", default=list(shared_places.PAIRED_PLACES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    places = shared_places.all_places(log=lambda _: None)
    results: dict[str, dict] = {}
    for name in args.places:
        held = next(p for p in places if p.name == name)
        train = [p for p in places if p is not held]
        kind = "spain" if name == shared_places.SPAIN else "terramind"
        for cond, target in DIRECTIONS[kind]:
            chosen, inner = choose(places, held, cond, target)
            rows = {CHOSEN: score(chosen, train, held, cond, target)}
            rows[CHOSEN]["choice"] = chosen.name  # type: ignore[assignment]
            baselines = [Candidate("mean"), Candidate("ridge", 1e-3)]
            baselines += [Candidate("copy")] if COPY.get(target) == cond else []
            for b in baselines:
                label = {"mean": "training mean", "ridge": "ridge", "copy": "copy"}[b.kind]
                rows[label] = score(b, train, held, cond, target)
            if target == "dem":  # a constant's relief error: the flat baseline
                rows["flat"] = dict(rows["training mean"], mae=rows["training mean"]["relief_mae"])
            results.setdefault(f"{cond} → {target}", {})[name] = rows
            print(f"[ceiling] {name} {cond} → {target}: chose {chosen.name} "
                  f"(inner errors {', '.join(f'{k} {v:.4g}' for k, v in inner.items())})",
                  flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(report(results) + "\n\n" + verdicts(results, model=CHOSEN))


if __name__ == "__main__":
    main()
