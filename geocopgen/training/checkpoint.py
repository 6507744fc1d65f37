"""Atomic training checkpoints that resume a run exactly.

A checkpoint is a folder ``step-00001234/`` holding ``model.safetensors``, ``ema.safetensors``,
``optimizer.pt`` (optimiser, learning-rate schedule and gradient-scaler states; tensors and
numbers only, so it loads with ``weights_only=True``), ``rng.pt`` (every random generator's
state) and ``state.json`` (step and config). It is written under a temporary name and renamed
into place, and ``latest`` is replaced atomically after that, so a run killed at any moment
leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from geocopgen.errors import CheckpointError

LATEST = "latest"


@dataclass
class TrainingState:
    """Everything a resumed run needs besides the code."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    meta: dict[str, Any]


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot the global Python, NumPy and torch generators (and an explicit one)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _pack_python_rng(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    random.setstate(_unpack_python_rng(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def _pack_python_rng(state: tuple) -> list:
    version, internal, gauss = state
    return [version, torch.tensor(internal, dtype=torch.int64), gauss]


def _unpack_python_rng(packed: list) -> tuple:
    version, internal, gauss = packed
    return (version, tuple(int(v) for v in internal.tolist()), gauss)


def save_checkpoint(root: str | Path, state: TrainingState, keep: int = 2) -> Path:
    """Write ``state`` under ``root`` atomically and point ``latest`` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous(state.model), tmp / "model.safetensors")
    save_file(_contiguous(state.ema), tmp / "ema.safetensors")
    torch.save(state.optimizer, tmp / "optimizer.pt")
    torch.save(state.rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": state.step, **state.meta}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    _prune(root, keep)
    return final


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The folder ``latest`` points at, or None for a fresh run."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise CheckpointError(f"{pointer} points at {path}, which is not a complete checkpoint")
    return path


def load_checkpoint(path: str | Path) -> TrainingState:
    """Read a checkpoint folder written by :func:`save_checkpoint` (no unpickling of code)."""
    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        return TrainingState(
            step=int(meta.pop("step")),
            model=load_file(path / "model.safetensors"),
            ema=load_file(path / "ema.safetensors"),
            optimizer=torch.load(path / "optimizer.pt", weights_only=True),
            rng=torch.load(path / "rng.pt", weights_only=True),
            meta=meta,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable geocopgen checkpoint ({exc})") from exc
