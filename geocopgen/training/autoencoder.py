"""Stage 1: one small KL autoencoder per modality, trained on crops of real rasters.

Rasters are opened as ModalityArrays (physical units; any CRS, resampled onto the modality's 10 m
model grid), cropped at random, flipped and rotated, normalised with the modality registry's
constants, and reconstructed. The loss is the L1 error over valid pixels plus a small KL term
that keeps the latent posterior well-behaved for the diffusion backbone; invalid (NaN) pixels
enter as 0 and are left out of the loss. The exported model is the EMA copy with its latent
scale fitted on chip-sized crops (:func:`~geocopgen.models.fit_scaling_factor`).

Train at the engine's chip size (256 px). These GroupNorm autoencoders learn size-dependent
border behaviour: one trained on 64 px crops was off by 100-230 m on 224 px DEM tiles that it
reconstructed to within 6-45 m at 64 px. Validation therefore always runs on ``val_crop_size``
(256 px) crops, whatever the training crop.

Config (YAML/TOML; every key below is all there is — anything else is an error)::

    model: {modality: s2l2a, latent_channels: 8, block_out_channels: [16, 32, 64, 64],
            layers_per_block: 1, norm_num_groups: 8, mid_block_add_attention: true,
            kl_weight: 1.0e-4}
    data:  {sources: [path-or-glob, ...], crop_size: 256, min_valid: 0.9, cache: true,
            val_sources: [], val_crops: 8, val_crop_size: 256, s2_offset: null,
            scaling_crops: 32}
    optim / ema / loop: see :mod:`geocopgen.training.config`
"""

from __future__ import annotations

import glob
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from geocopgen.errors import ConfigError, OffsetWarning
from geocopgen.modalities import Modality, get_modality
from geocopgen.models.autoencoder import ModalityAutoencoder, fit_scaling_factor
from geocopgen.models.checkpoints import save_model
from geocopgen.training import randomness
from geocopgen.training.config import TrainConfig, config_from_dict, load_config
from geocopgen.training.distributed import DistInfo
from geocopgen.training.loop import Trainer
from geocopgen.training.stage import StageResult, validate_final

log = logging.getLogger(__name__)

EXPORT_DIR = "autoencoder"
CHIP_SIZE = 256  # the raster engine's chip, at which the latent scale is fitted
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class AutoencoderModelConfig:
    """The ``model`` section: :class:`ModalityAutoencoder` arguments plus the KL weight."""

    modality: str = "s2l2a"
    latent_channels: int = 8
    block_out_channels: tuple[int, int, int, int] = (16, 32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    mid_block_add_attention: bool = True
    kl_weight: float = 1e-4  # on the mean KL per latent element, against the mean L1 per pixel

    def build(self) -> ModalityAutoencoder:
        return ModalityAutoencoder(
            modality=get_modality(self.modality).name,
            latent_channels=self.latent_channels,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            mid_block_add_attention=self.mid_block_add_attention,
        )


@dataclass(frozen=True)
class AutoencoderDataConfig:
    """The ``data`` section: which rasters, how they are cropped."""

    sources: tuple[str, ...] = ()  # files, band folders or globs; list one twice to weight it
    crop_size: int = 256  # the engine's chip; smaller rasters are reflection-padded to it
    min_valid: float = 0.9  # least valid-pixel fraction of a crop (10 tries, then accepted)
    cache: bool = True  # read rasters into memory once (small data); False: windowed reads
    augment: bool = True  # the 8 flips/rotations of the square
    val_sources: tuple[str, ...] = ()  # held-out rasters for periodic validation
    val_crops: int = 8
    val_crop_size: int = 256  # the engine's chip: validation measures the codec as it is used
    s2_offset: int | None = None  # override the Sentinel-2 DN offset of every source
    scaling_crops: int = 32  # chip-sized crops the latent scale factor is fitted on


# --- data -------------------------------------------------------------------------------------
def expand_sources(patterns: Sequence[str], where: str) -> list[str]:
    """Paths and globs → existing paths, in the given order (globs sorted)."""
    out: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            hits = sorted(glob.glob(pattern))
            if not hits:
                raise ConfigError(f"{where}: {pattern!r} matches no file; fix the path or glob")
            out.extend(hits)
        elif Path(pattern).exists():
            out.append(pattern)
        else:
            raise ConfigError(f"{where}: {pattern} does not exist; fix the path")
    return out


def open_on_model_grid(path: str, modality: Modality, s2_offset: int | None = None) -> xr.DataArray:
    """A ModalityArray of ``path`` on the modality's model grid (10 m, projected; lazy)."""
    from geocopgen.io import model_grid, open_raster, reproject

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetWarning)  # training data: io's decision stands
        array = open_raster(path, modality, offset=s2_offset)
    return reproject(array, model_grid(array, modality.name), warn=False)


class RasterCrops(Dataset):
    """Random crops of a modality's rasters, normalised, NaN → 0 with a validity mask.

    Item ``i`` comes from raster ``i % len(rasters)`` (each source equally likely); the crop
    position and the flip/rotation are drawn from torch's global generator, which the trainer
    seeds per sample, so the same (seed, step, position) always gives the same crop. A raster
    smaller than the crop is taken whole and reflection-padded bottom/right, exactly as the raster
    engine pads a small tile into a chip; the padding is left out of the loss (mask False).
    """

    def __init__(
        self,
        arrays: Sequence[xr.DataArray],
        modality: Modality,
        crop_size: int,
        *,
        length: int = 1_000_000,
        min_valid: float = 0.9,
        augment: bool = True,
        cache: bool = True,
    ) -> None:
        if not arrays:
            raise ConfigError(f"no {modality.name} rasters to train on; list some in data.sources")
        for a in arrays:
            if 2 * min(a.sizes["y"], a.sizes["x"]) <= crop_size:
                raise ConfigError(
                    f"{a.attrs.get('source')}: {a.sizes['y']}x{a.sizes['x']} px is not more than "
                    f"half of data.crop_size={crop_size}, too small to reflection-pad into a crop; "
                    "lower the crop size or drop the raster"
                )
        self.modality, self.crop_size, self.length = modality, crop_size, length
        self.min_valid, self.augment = min_valid, augment
        self.rasters = [np.asarray(a.values, np.float32) if cache else a.data for a in arrays]

    def __len__(self) -> int:
        return self.length

    def read(
        self, k: int, row: int, col: int, size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(crop, valid): ``size`` px from ``(row, col)``, reflection-padded where the raster
        ends; ``valid`` is False on NaN and on padding."""
        s = size or self.crop_size
        window = self.rasters[k][:, row : row + s, col : col + s]
        if hasattr(window, "compute"):
            window = window.compute(scheduler="synchronous")
        crop = np.asarray(window, np.float32)
        valid = np.isfinite(crop).all(axis=0)
        bottom, right = s - crop.shape[1], s - crop.shape[2]
        if bottom or right:
            crop = np.pad(crop, ((0, 0), (0, bottom), (0, right)), mode="reflect")
            valid = np.pad(valid, ((0, bottom), (0, right)), constant_values=False)
        return crop, valid

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k = index % len(self.rasters)
        _, height, width = self.rasters[k].shape
        s = self.crop_size
        real = min(height, s) * min(width, s)
        for _ in range(10):
            row = int(torch.randint(max(height - s, 0) + 1, (1,)))
            col = int(torch.randint(max(width - s, 0) + 1, (1,)))
            crop, valid = self.read(k, row, col)
            if valid.sum() >= self.min_valid * real:
                break
        return self.item(crop, valid, self.augment)

    def item(self, crop: np.ndarray, valid: np.ndarray, augment: bool) -> dict[str, torch.Tensor]:
        """Normalised input (NaN → 0; padding keeps its reflected values, as the engine feeds
        them) and the loss mask (``valid``: not NaN, not padding)."""
        x = torch.from_numpy(self.modality.model_input(np.array(crop, dtype=np.float32)))
        mask = torch.from_numpy(valid)
        if augment:
            from geocopgen.latents.dataset import DIHEDRAL, dihedral

            rot, flip = DIHEDRAL[int(torch.randint(8, (1,)))]
            x, mask = dihedral(x, rot, flip), dihedral(mask, rot, flip)
        return {"x": x.contiguous(), "mask": mask.contiguous()}

    def fixed_crops(self, n: int, size: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` deterministic, unaugmented crops of ``size`` px (default: the training crop), a
        regular sweep over the rasters, for validation."""
        size = size or self.crop_size
        items = []
        for j in range(n):
            k = j % len(self.rasters)
            _, height, width = self.rasters[k].shape
            frac = (j // len(self.rasters) + 0.5) / max(1, -(-n // len(self.rasters)))
            row = int(frac * max(height - size, 0))
            col = int((1 - frac) * max(width - size, 0))
            crop, valid = self.read(k, row, col, size)
            items.append(self.item(crop, valid, augment=False))
        return {key: torch.stack([it[key] for it in items]) for key in items[0]}


# --- model and loss ---------------------------------------------------------------------------
class ReconstructionModel(nn.Module):
    """The training-time graph: encode, draw a posterior sample with given noise, decode.

    A module of its own so DDP sees one ``forward`` (gradient sync hooks run only through the
    wrapper's forward) and so the noise comes from the sample seeds, not a shared generator.
    """

    def __init__(self, autoencoder: ModalityAutoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ae = self.autoencoder
        moments = ae.encode_moments(x)
        mean, logvar = moments.chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise.to(mean.dtype)
        if ae.post_quant_conv is not None:
            z = ae.post_quant_conv(z)
        return ae.decoder(z), moments


def reconstruction_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mask: torch.Tensor,
    moments: torch.Tensor,
    kl_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, masked mean L1, mean KL per latent element)."""
    m = mask[:, None].to(recon.dtype)
    l1 = ((recon.float() - x.float()).abs() * m).sum() / (m.sum() * x.shape[1]).clamp_min(1.0)
    mean, logvar = moments.float().chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return l1 + kl_weight * kl, l1, kl


def make_loss(modality: str, kl_weight: float, latent_channels: int):
    """The stage-1 ``loss_fn(model, batch, seeds)``: posterior noise from each sample's seed."""

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], seeds: torch.Tensor):
        x, mask = batch["x"], batch["mask"]
        shape = (latent_channels, x.shape[-2] // 8, x.shape[-1] // 8)
        noise = randomness.randn(randomness.generators(seeds), shape).to(x.device)
        recon, moments = model(x, noise)
        total, l1, kl = reconstruction_loss(recon, x, mask, moments, kl_weight)
        return total, {modality: float(l1.detach()), "kl": float(kl.detach())}

    return loss_fn


def make_validation(crops: dict[str, torch.Tensor], modality: Modality):
    """``val_fn(ema_model)``: reconstruction of fixed crops from the posterior mean."""

    def val_fn(model: nn.Module) -> dict[str, float]:
        ae = model.autoencoder
        device = next(ae.parameters()).device
        x, mask = crops["x"].to(device), crops["mask"].to(device)
        moments = ae.encode_moments(x)
        z = moments.chunk(2, dim=1)[0]
        if ae.post_quant_conv is not None:
            z = ae.post_quant_conv(z)
        recon = ae.decoder(z)
        _, l1, _ = reconstruction_loss(recon, x, mask, moments, 0.0)
        phys = modality.denormalize(recon, axis=1) - modality.denormalize(x, axis=1)
        m = mask[:, None].float()
        mae = float((phys.abs() * m).sum() / (m.sum() * x.shape[1]).clamp_min(1.0))
        return {"val_l1": float(l1), f"val_mae_{modality.units.split()[-1]}": mae}

    return val_fn


# --- the entry point --------------------------------------------------------------------------
def autoencoder_sections(
    config: TrainConfig,
) -> tuple[AutoencoderModelConfig, AutoencoderDataConfig]:
    """Parse the stage's free-form sections strictly (unknown keys are errors)."""
    model = config_from_dict(AutoencoderModelConfig, config.model, where="model")
    data = config_from_dict(AutoencoderDataConfig, config.data, where="data")
    if not data.sources:
        raise ConfigError("data.sources is empty; list the rasters to train the autoencoder on")
    if data.crop_size % 8 or data.crop_size < 16:
        raise ConfigError(f"data.crop_size={data.crop_size} must be a multiple of 8, at least 16")
    return model, data


def train_autoencoder(
    config: TrainConfig | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    device: str | torch.device | None = None,
    dist_info: DistInfo | None = None,
) -> StageResult:
    """Train (or resume) one modality's autoencoder; export it to ``out_dir/autoencoder``.

    Checkpoints go to ``out_dir/checkpoints``; rerunning with the same config resumes exactly
    where a killed run stopped. The export (EMA weights, fitted latent scale, safetensors + JSON)
    loads with ``ModalityAutoencoder.from_pretrained``.
    """
    config = load_config(config) if isinstance(config, (str, Path)) else config
    spec, data = autoencoder_sections(config)
    modality = get_modality(spec.modality)
    out_dir = Path(out_dir)
    arrays = [
        open_on_model_grid(p, modality, data.s2_offset)
        for p in expand_sources(data.sources, "data.sources")
    ]
    crops = RasterCrops(
        arrays,
        modality,
        data.crop_size,
        min_valid=data.min_valid,
        augment=data.augment,
        cache=data.cache,
    )
    val_fn = None
    if config.loop.val_every:
        val_paths = expand_sources(data.val_sources, "data.val_sources") if data.val_sources else []
        val_set = crops
        if val_paths:
            val_arrays = [open_on_model_grid(p, modality, data.s2_offset) for p in val_paths]
            val_set = RasterCrops(
                val_arrays, modality, data.crop_size, augment=False, cache=data.cache
            )
        val_fn = make_validation(val_set.fixed_crops(data.val_crops, data.val_crop_size), modality)
    torch.manual_seed(config.loop.seed)  # the initial weights follow the run's seed
    model = ReconstructionModel(spec.build())
    trainer = Trainer(
        model,
        crops,
        make_loss(modality.name, spec.kl_weight, spec.latent_channels),
        config,
        out_dir / CHECKPOINT_DIR,
        val_fn=val_fn,
        device=device,
        dist_info=dist_info,
    )
    result = trainer.fit(resume=resume)
    validate_final(trainer, result)
    export = out_dir / EXPORT_DIR
    extra: dict[str, Any] = {}
    if trainer.dist.is_main:
        ae = trainer.ema_model().autoencoder.cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.loop.seed + 104_729)
            extra["scaling_factor"] = fit_scaling_factor(ae, _scaling_batches(crops, data))
        save_model(ae, export)
        log.info("exported %s autoencoder to %s", modality.name, export)
    return StageResult(model_dir=export, train=result, extra=extra)


def _scaling_batches(crops: RasterCrops, data: AutoencoderDataConfig) -> list[torch.Tensor]:
    """Chip-sized training crops for the latent scale (the backbone sees chip latents)."""
    x = crops.fixed_crops(data.scaling_crops, CHIP_SIZE)["x"]
    return list(x.split(8))
