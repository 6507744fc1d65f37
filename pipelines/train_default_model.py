"""Recipe: the bundled default model (``geocopgen/weights/default``), exactly as it was made.

    python pipelines/train_default_model.py            # from the repository root

1. Stage 1: one autoencoder per modality (``pipelines/configs/default_ae_<modality>.yaml``) on
   crops of every real raster of that modality in ``../shared/data``.
2. Latent store: the 4 TerraMind places (the only data with all 4 modalities on one grid), each
   encoded as 32 shifted variants — the tile cropped at a seeded offset of 0..31 px and
   reflection-padded back to the engine's 256 px chip, as the engine pads 224 px tiles — so the
   backbone sees content at many positions relative to the 8 px latent cells and to the padding.
   Flips and rotations come on top, in the store's dataset.
3. Stage 2: the backbone (``pipelines/configs/default_backbone.yaml``) on that store.
4. Export: the pipeline (backbone EMA weights, the four autoencoders, DPM-Solver++) as
   safetensors (float16, computed in float32 after loading) + JSON into
   ``geocopgen/weights/default``; the total size is checked (≤ 30 MB).

Every stage resumes: rerun the same command after a kill and it continues where it stopped.
The wall time of each stage and of the whole recipe is printed at the end.
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting for a busy core slow training by up to
# 10x; sleeping threads lose little on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from affine import Affine

from geocopgen.errors import OffsetWarning
from geocopgen.latents import Place, encode_places
from geocopgen.latents.places import places_from_folder
from geocopgen.modalities import OFFICIAL_ORDER, get_modality
from geocopgen.models import CopGenPipeline, ModalityAutoencoder
from geocopgen.raster.grid import GeoBox
from geocopgen.training import config_from_dict
from geocopgen.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "pipelines" / "configs"
TERRAMIND = REPO / ".." / "shared" / "data" / "terramind"
CHIP = 256
VARIANTS = 32
MAX_SHIFT = 32
SIZE_LIMIT_MB = 30.0


def load_yaml(name: str, **data_overrides) -> TrainConfig:
    """A recipe config with some ``data`` keys filled in (strictly checked like any other)."""
    values = yaml.safe_load((CONFIGS / name).read_text())
    values["data"] = {**values.get("data", {}), **data_overrides}
    return config_from_dict(TrainConfig, values, where=str(CONFIGS / name))


def terramind_places() -> list[Place]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)
        return places_from_folder(TERRAMIND, list(OFFICIAL_ORDER))


def shifted_variants(place: Place, n: int = VARIANTS, seed: int = 0) -> list[Place]:
    """``n`` chip-sized variants of a small place: cropped at (dy, dx), reflection-padded.

    Variant 0 is the tile as the engine sees it (no crop, padded bottom/right); the others crop
    ``dy`` rows and ``dx`` columns off the top-left, drawn from a seeded generator, so each is a
    real georeferenced raster (its transform moves with the crop).
    """
    from geocopgen.io.array import modality_array

    rng = np.random.default_rng(seed + sum(map(ord, place.name)))
    shifts = [(0, 0)] + [tuple(int(v) for v in rng.integers(0, MAX_SHIFT, 2)) for _ in range(n - 1)]
    arrays = {m: (a, np.asarray(a.values, np.float32)) for m, a in place.arrays.items()}
    out = []
    for dy, dx in shifts:
        variant = {}
        for m, (array, values) in arrays.items():
            crop = values[:, dy:, dx:]
            pad = ((0, 0), (0, CHIP - crop.shape[1]), (0, CHIP - crop.shape[2]))
            padded = np.pad(crop, pad, mode="reflect")
            transform = array.rio.transform() * Affine.translation(dx, dy)
            grid = GeoBox((CHIP, CHIP), transform, array.rio.crs)  # padded past the tile's edge
            variant[m] = modality_array(
                padded, grid, get_modality(m), source=str(array.attrs.get("source", ""))
            )
        out.append(Place(f"{place.name}+{dy:02d}+{dx:02d}", variant, place.datetime, place.sources))
    return out


def train_autoencoders(work: Path, modalities: Sequence[str] = OFFICIAL_ORDER) -> dict[str, Path]:
    from geocopgen.training import train_autoencoder

    out = {}
    for m in modalities:
        t0 = time.perf_counter()
        result = train_autoencoder(load_yaml(f"default_ae_{m}.yaml"), work / f"ae_{m}")
        print(
            f"[stage 1] {m}: {time.perf_counter() - t0:.0f} s, "
            f"scale {result.extra.get('scaling_factor', float('nan')):.3f}, "
            f"validation {result.train.validation[-1:]}",
            flush=True,
        )
        out[m] = result.model_dir
    return out


def encode_store(work: Path, autoencoders: dict[str, Path]) -> Path:
    store = work / "latents.zarr"
    codecs = {
        m: ModalityAutoencoder.from_pretrained(str(p)).eval() for m, p in autoencoders.items()
    }
    places = [v for p in terramind_places() for v in shifted_variants(p)]
    report = encode_places(places, store, codecs, chip_size=CHIP, batch_size=8, num_workers=1)
    print(
        f"[encode] {store}: {report.planned} chips, {report.encoded} encoded now, "
        f"{report.already_complete} already done, {report.failed} failed",
        flush=True,
    )
    return store


def train_backbone_stage(
    work: Path,
    store: Path,
    autoencoders: dict[str, Path],
    *,
    name: str = "backbone",
    exclude_places: Sequence[str] = (),
    steps: int | None = None,
    depth: int | None = None,
) -> Path:
    """Train the recipe's backbone; ``steps`` and ``depth`` override the config's (experiments)."""
    from geocopgen.training import train_backbone

    config = load_yaml(
        "default_backbone.yaml",
        store=str(store),
        autoencoders={m: str(p) for m, p in autoencoders.items()},
        exclude_places=list(exclude_places),
    )
    if steps is not None:
        config = replace(config, loop=replace(config.loop, steps=steps))
    if depth is not None:
        config = replace(config, model={**config.model, "depth": depth})
    t0 = time.perf_counter()
    result = train_backbone(config, work / name)
    seconds = time.perf_counter() - t0
    done = len(result.train.history) and result.train.step
    print(
        f"[stage 2] {name}: {seconds:.0f} s for {done} steps "
        f"({config.loop.batch_size * done / max(seconds, 1e-9):.2f} samples/s incl. "
        f"validation and checkpoints; a resumed run counts only its own steps), "
        f"validation {result.train.validation[-1:]}",
        flush=True,
    )
    return result.model_dir


def export(pipeline_dir: Path, target: Path) -> float:
    """Copy the pipeline into ``target`` (atomically) and return its size in MB."""
    # float16 storage (computed in float32 after loading) halves the folder to fit the limit
    CopGenPipeline.from_pretrained(pipeline_dir).save_pretrained(target, dtype=torch.float16)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)  # the atomic writer's temporary folder was private (0700)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    if size > SIZE_LIMIT_MB:
        raise SystemExit(f"{target}: {size:.1f} MB exceeds the {SIZE_LIMIT_MB} MB limit")
    return size


def work_folder(path: str) -> Path:
    """``--work`` (and ``--out``) as an absolute path, resolved against the caller's directory
    before the recipe moves to the repository root: the stages' checkpoints record the store and
    autoencoder paths under it, and a resume compares them, so the same folder must give the
    same paths whatever the spelling or the current directory."""
    return Path(path).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=work_folder,
        default=REPO / "work" / "default-model",
        help="Checkpoints and the latent store (resumable).",
    )
    parser.add_argument(
        "--out", type=work_folder, default=REPO / "geocopgen" / "weights" / "default"
    )
    parser.add_argument(
        "--depth", type=int, default=None, help="Backbone depth instead of the config's (8)."
    )
    args = parser.parse_args()
    os.chdir(REPO)  # the configs' data paths are relative to the repository root
    start, cpu_start = time.perf_counter(), time.process_time()
    times = {}
    t0 = time.perf_counter()
    autoencoders = train_autoencoders(args.work)
    times["stage 1 (4 autoencoders)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = encode_store(args.work, autoencoders)
    times["encoding"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipeline = train_backbone_stage(args.work, store, autoencoders, depth=args.depth)
    times["stage 2 (backbone)"] = time.perf_counter() - t0
    size = export(pipeline, args.out)
    total = time.perf_counter() - start
    for label, seconds in times.items():
        print(f"{label:<28} {seconds / 60:6.1f} min")
    print(
        f"{'total wall time':<28} {total / 60:6.1f} min  ({os.cpu_count()} CPU cores; "
        f"{(time.process_time() - cpu_start) / 60:.1f} min of CPU time)"
    )
    print(f"exported {args.out} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
