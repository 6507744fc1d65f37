"""FID, precision and recall from a feature extractor the user points to (never downloaded).

There is no Inception network for 12-band reflectance or radar backscatter, and nothing may be
fetched at run time, so the extractor is the user's own local file, in one of two forms:

* ``<name>.safetensors`` + ``<name>.json``: weights and config of :class:`FeatureNet`, the small
  convolutional network defined here (``{"in_channels": C, "widths": [32, 64, 128]}``); write
  one with :func:`save_feature_net` after training it however you like;
* ``<name>.pt`` / ``.ts`` / ``.jit``: a TorchScript module you trust.

Interface either way: input ``(B, C, H, W)`` float32 in the target modality's *normalised*
model units (``Modality.normalize(x, axis=1)``), ``H, W`` at least 32; output ``(B, D)``.

FID is the Fréchet distance between Gaussians fitted to real and generated features;
precision/recall are the k-nearest-neighbour manifold estimates of Kynkäänniemi et al. (2019):
the share of generated samples inside the real manifold, and of real ones inside the generated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from geocopgen.errors import CheckpointError

__all__ = [
    "FeatureNet",
    "extract_features",
    "frechet_distance",
    "load_feature_extractor",
    "precision_recall",
    "save_feature_net",
]

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".jit")


class FeatureNet(nn.Module):
    """Strided 3x3 convolutions with GELU, then global average pooling: ``(B, C, H, W)`` →
    ``(B, widths[-1])``."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        self.in_channels, self.widths = int(in_channels), [int(w) for w in widths]
        layers: list[nn.Module] = []
        prev = self.in_channels
        for w in self.widths:
            layers += [nn.Conv2d(prev, w, 3, stride=2, padding=1), nn.GELU()]
            prev = w
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))


def save_feature_net(model: FeatureNet, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` config beside it."""
    path = Path(path).with_suffix(".safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    config = {"in_channels": model.in_channels, "widths": model.widths}
    path.with_suffix(".json").write_text(json.dumps(config))
    return path


def load_feature_extractor(path: str | Path) -> nn.Module:
    """Load a local feature extractor (see the module docstring for the two forms)."""
    from geocopgen.models.checkpoints import load_checked, read_config, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such feature-extractor file")
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as err:
            raise CheckpointError(f"{path}: not a TorchScript module ({err})") from None
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: a feature extractor is a .safetensors file (with a .json config beside "
            f"it) or a TorchScript file ({', '.join(TORCHSCRIPT_SUFFIXES)})"
        )
    config = read_config(path.with_suffix(".json"))
    try:
        model = FeatureNet(config["in_channels"], config.get("widths", (32, 64, 128)))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path.with_suffix('.json')}: not a FeatureNet config ({err})"
        ) from None
    load_checked(model, read_safetensors(path), str(path))
    return model.eval()


@torch.no_grad()
def extract_features(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``(N, C, H, W)`` normalised images → ``(N, D)`` float64 features."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], np.float32))
        out.append(model(x).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, D)`` feature sets.

    ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r^1/2 S_g S_r^1/2)^1/2)``, with the matrix square
    roots taken from symmetric eigendecompositions (no SciPy needed, no complex round-off).
    """
    if len(real) < 2 or len(generated) < 2:
        return float("nan")
    mu_r, mu_g = real.mean(0), generated.mean(0)
    s_r = np.atleast_2d(np.cov(real, rowvar=False))
    s_g = np.atleast_2d(np.cov(generated, rowvar=False))
    root_r = _sqrtm_psd(s_r)
    cross = _sqrtm_psd(root_r @ s_g @ root_r)
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r) + np.trace(s_g) - 2 * np.trace(cross))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds in feature space)."""
    if len(real) <= k or len(generated) <= k:
        return float("nan"), float("nan")
    r, g = torch.from_numpy(real), torch.from_numpy(generated)

    def radii(x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        return d.kthvalue(k + 1, dim=1).values  # the 0 distance to itself is the first

    def inside(points: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= radius[None]).any(dim=1).double().mean())

    return inside(g, r, radii(r)), inside(r, g, radii(g))
