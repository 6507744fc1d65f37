"""Recipe: the bundled default model (``geocopgen/weights/default``), exactly as it was made.

    python pipelines/train_default_model.py            # from the repository root

The model is a COP-GEN model, like the published weights: the same twelve slots, the same 1920 m
chips, latent shapes, normalisations and sampler, so the same translation code runs both. Only
the sizes differ: whitened principal-component codecs instead of the published VAEs, and a
small backbone (192 wide, 6 blocks, 4 x 4 latent patches) instead of a 1024-wide one.

1. Places: every real raster in ``../shared/data`` (``shared_places.py``): 5 places with
   co-registered modalities, 2 Major TOM cells, the Virginia L1C scene, 18 OPERA RTC bursts and
   9 DEMs; each slot in model units on its own grid.
2. Codecs: one :class:`~geocopgen.copgen.codec.PatchCodec` per slot, fitted in closed form on
   every valid patch of every place that has the slot.
3. First guess: one latent map per (condition modality, target slot)
   (:mod:`geocopgen.copgen.first_guess`), fitted in closed form on the paired places' chips,
   its form (no map, an intercept, or a ridge strength) chosen by leave-one-place-out; and per
   paired place the same maps fitted without it.
4. Backbone: random roles per batch (:mod:`geocopgen.copgen.train`), predicting the clean latent
   minus the first guess fitted without the batch's place, for ``--steps`` steps, checkpointed
   every 100 steps.
5. Export: float16 safetensors + ``pipeline.json`` into ``geocopgen/weights/default`` (checked
   ≤ 30 MB).

Every stage resumes: rerun the same command after a kill and it continues where it stopped
(codecs are kept, the backbone continues from its last checkpoint with the same random draws).
The wall time of each stage and of the whole recipe is printed at the end and written to
``<work>/recipe_times.json``.
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting for a busy core slow training by up to
# 10x; sleeping threads lose little on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_places

from geocopgen.copgen.codec import PatchCodec
from geocopgen.copgen.first_guess import FirstGuess
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.places import SlotPlace
from geocopgen.copgen.train import (
    BackboneSettings,
    assemble,
    fit_codecs,
    fit_first_guess,
    parameter_count,
    train_backbone,
)
from geocopgen.models.checkpoints import load_model, save_model

REPO = Path(__file__).resolve().parents[1]
SIZE_LIMIT_MB = 30.0
HELD_OUT = "held_out"
#: The shipped model's backbone settings: a step budget (the same model on any machine), with
#: a wall-time cap that keeps the whole recipe under two hours on the 2-core CPU.
SETTINGS = BackboneSettings(max_steps=3600, minutes=100.0)
#: Where sampling starts (``CopgenModel.strength``): chosen by ``lopo_default_model.py
#: --strength`` (docs/model-card.md).
STRENGTH = 0.02


def codecs_stage(places: Sequence[SlotPlace], folder: Path) -> dict[str, PatchCodec]:
    """Fit the codecs once; a rerun loads them from ``folder``."""
    if folder.is_dir():
        return {p.name: load_model(PatchCodec, p) for p in sorted(folder.iterdir()) if p.is_dir()}
    codecs = fit_codecs(places)
    tmp = folder.with_name(folder.name + ".partial")
    for key, codec in codecs.items():
        save_model(codec, tmp / key)
    tmp.replace(folder)
    return codecs


def first_guess_stage(
    places: Sequence[SlotPlace], codecs: dict[str, PatchCodec], folder: Path
) -> tuple[FirstGuess, dict[str, FirstGuess]]:
    """Fit the latent first guess and its held-out versions once; a rerun loads them from
    ``folder`` (the guess) and ``folder/held_out/<place>``."""
    if folder.is_dir():
        held = sorted((folder / HELD_OUT).glob("*/"))
        return load_model(FirstGuess, folder), {p.name: load_model(FirstGuess, p) for p in held}
    guess, held_out = fit_first_guess(places, codecs)
    tmp = folder.with_name(folder.name + ".partial")
    save_model(guess, tmp)
    for name, fold in held_out.items():
        save_model(fold, tmp / HELD_OUT / name)
    tmp.replace(folder)
    return guess, held_out


def build_model(
    places: Sequence[SlotPlace], work: Path, settings: BackboneSettings
) -> tuple[CopgenModel, dict[str, float]]:
    """Stages 2 and 3 into ``work``; returns the model and each stage's wall time."""
    times = {}
    t0 = time.perf_counter()
    codecs = codecs_stage(places, work / "codecs")
    times["codecs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_guess, held_out = first_guess_stage(places, codecs, work / "first_guess")
    times["first guess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    backbone = train_backbone(places, codecs, settings, work / "backbone",
                              first_guess=first_guess, held_out_guesses=held_out)  # fmt: skip
    times["backbone"] = time.perf_counter() - t0
    provenance = {
        "recipe": "pipelines/train_default_model.py",
        "git_commit": _git_commit(),
        "made": datetime.now(UTC).strftime("%Y-%m-%d"),
        "settings": asdict(settings),
        "places": [p.name for p in places],
        "backbone_parameters": parameter_count(backbone),
    }
    return assemble(backbone, codecs, settings, provenance, first_guess, STRENGTH), times


def export(model: CopgenModel, target: Path) -> float:
    """Write the model as float16 into ``target`` (atomically) and return its size in MB."""
    model.save_pretrained(target, dtype=torch.float16)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)  # the atomic writer's temporary folder was private (0700)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    if size > SIZE_LIMIT_MB:
        raise SystemExit(f"{target}: {size:.1f} MB exceeds the {SIZE_LIMIT_MB} MB limit")
    return size


def work_folder(path: str) -> Path:
    """``--work`` (and ``--out``) as an absolute path: the backbone checkpoint and the codecs
    live under it, so one folder must mean one place whatever the caller's directory."""
    return Path(path).resolve()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=work_folder,
                        default=REPO / "work" / "default-model",
                        help="Codecs and backbone checkpoints (resumable).")  # fmt: skip
    parser.add_argument("--out", type=work_folder,
                        default=REPO / "geocopgen" / "weights" / "default")  # fmt: skip
    parser.add_argument("--steps", type=int, default=SETTINGS.max_steps,
                        help="Backbone training steps (default: SETTINGS.max_steps).")  # fmt: skip
    args = parser.parse_args()
    start, cpu_start = time.perf_counter(), time.process_time()
    settings = replace(SETTINGS, max_steps=args.steps)
    t0 = time.perf_counter()
    places = shared_places.all_places()
    times = {"places": time.perf_counter() - t0}
    model, more = build_model(places, args.work, settings)
    times |= more
    t0 = time.perf_counter()
    size = export(model, args.out)
    times["export"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - start
    for label, seconds in times.items():
        print(f"{label:<12} {seconds / 60:6.1f} min")
    print(f"({os.cpu_count()} CPU cores; {(time.process_time() - cpu_start) / 60:.1f} min of "
          f"CPU time) exported {args.out} ({size:.1f} MB)")  # fmt: skip
    (args.work / "recipe_times.json").write_text(json.dumps(times, indent=2) + "\n")


if __name__ == "__main__":
    main()
