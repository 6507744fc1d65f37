"""Weights on disk: safetensors + JSON config per component, loaded with named errors.

Files are the diffusers layout (``config.json`` + ``diffusion_pytorch_model.safetensors``), so a
saved component also loads with ``<Class>.from_pretrained``. geocopgen loads them itself to
check every tensor name and shape and to say exactly what does not fit (:class:`LoadReport`).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from geocopgen.errors import CheckpointError

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"

ModelT = TypeVar("ModelT", bound=nn.Module)


@dataclass
class LoadReport:
    """What did not fit when a state dict met a model."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 12) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
                parts.append(f"{len(items)} {label} key(s): {shown}")
        if self.mismatched:
            shown = ", ".join(
                f"{k} (checkpoint {list(a)} vs model {list(b)})"
                for k, a, b in self.mismatched[:limit]
            )
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {shown}")
        return "; ".join(parts) or "all keys and shapes match"


def compare_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Name-by-name and shape-by-shape comparison of ``state_dict`` against ``model``."""
    own = model.state_dict()
    report = LoadReport(
        missing=[k for k in own if k not in state_dict],
        unexpected=[k for k in state_dict if k not in own],
    )
    for key, tensor in state_dict.items():
        if key in own and tuple(tensor.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(own[key].shape)))
    return report


def load_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    strict: bool = True,
    advice: str = "Check that the config matches the checkpoint (modalities, widths, depth).",
) -> LoadReport:
    """Load ``state_dict`` into ``model``; raise :class:`CheckpointError` naming every misfit,
    followed by ``advice``.

    With ``strict=False`` the tensors that fit are loaded and the report is returned.
    """
    report = compare_state_dict(model, state_dict)
    if strict and not report.ok:
        raise CheckpointError(
            f"{source}: the weights do not fit {type(model).__name__}: {report.describe()}. "
            f"{advice}"
        )
    bad = {k for k, _, _ in report.mismatched}
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in bad}, strict=False)
    return report


def read_flat_state_dict(path: str | os.PathLike, *, expected: str) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` that must be a flat ``{name: tensor}`` state dict, tensors only.

    ``torch.load(weights_only=True)`` never runs code from the file. Everything else (a missing
    file, a pickle that needs code, a corrupt or non-torch file, a nested dict) is a one-line
    :class:`CheckpointError` naming the file and ending with ``expected`` (what the file should be).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; {expected}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: {_unpickling_problem(err)}; {expected}") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, IndexError... on junk
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint ({type(err).__name__}: "
            f"{_first_sentence(str(err))}); "
            f"{expected}"
        ) from None
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, not a flat state dict of tensors; {expected}"
        )
    return dict(obj)


def _unpickling_problem(err: pickle.UnpicklingError) -> str:
    """One line for what ``weights_only`` refused (torch's own message spans many lines)."""
    text = str(err)
    needs = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if needs:
        return (
            f"holds pickled Python objects that need code to load (it needs {needs.group(1)}), "
            "which tensors-only loading (weights_only=True) refuses"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    first = _first_sentence(detail.group(1) if detail else text)
    return f"cannot be read as a torch checkpoint (unpickling failed: {first})"


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first line and sentence of an exception message, for one-line errors."""
    line = (text.strip().splitlines() or [""])[0]
    return line.split(". ")[0][:limit]


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file (expected {WEIGHTS_NAME})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a safetensors file ({err}). geocopgen loads weights only from "
            "safetensors; convert official .pth checkpoints with "
            "geocopgen.models.official.convert_official_checkpoint"
        ) from None


def save_model(
    model: nn.Module, folder: str | os.PathLike, *, dtype: torch.dtype | None = None
) -> None:
    """``config.json`` + safetensors weights in ``folder`` (diffusers ``save_pretrained``).

    ``dtype`` stores the weights in another precision (``torch.float16`` halves the folder);
    :func:`load_model` always rebuilds the model in float32, upcasting what it reads.
    """
    if dtype is not None and any(p.dtype != dtype for p in model.parameters()):
        # nn.Module.to, not diffusers' override, which warns about casts meant for inference
        model = nn.Module.to(copy.deepcopy(model), dtype)
    model.save_pretrained(str(folder), safe_serialization=True)


def load_model(cls: type[ModelT], folder: str | os.PathLike) -> ModelT:
    """Rebuild ``cls`` from ``folder``'s config and load its safetensors weights, checked."""
    folder = Path(folder)
    config = read_config(folder / CONFIG_NAME)
    saved = config.get("_class_name")
    if saved and saved != cls.__name__:
        raise CheckpointError(
            f"{folder}: holds a {saved}, not a {cls.__name__}; point at the right component folder"
        )
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        others = sorted(
            p.name for p in folder.glob("*") if p.suffix in {".bin", ".pth", ".pt", ".ckpt"}
        )
        raise CheckpointError(
            f"{folder}: no {WEIGHTS_NAME}"
            + (f" (found {', '.join(others)}: geocopgen loads only safetensors)" if others else "")
        )
    model = cls.from_config(_init_kwargs(cls, config))
    load_checked(model, read_safetensors(weights), str(weights))
    return model.eval()


def read_config(path: str | os.PathLike) -> dict:
    """A JSON config file as a dict, with a :class:`CheckpointError` when it is not one."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; is this a geocopgen model folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


@contextmanager
def atomic_folder(target: str | os.PathLike):
    """Yield a temporary folder beside ``target``; move it into place only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _public_permissions(tmp)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _public_permissions(root: Path) -> None:
    """Give the published folder the modes of a normal file tree (``mkdtemp`` makes it 0700, and
    some writers create 0600 files), so an installed model is readable by every user."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _init_kwargs(cls: type, config: Mapping) -> dict:
    """The config keys ``cls.__init__`` accepts (drops derived and private entries)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in config.items() if k in params}
