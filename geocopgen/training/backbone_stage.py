"""Stage 2: the multimodal U-ViT on a zarr latent store.

Each sample is one chip's latents for every modality of the store, co-augmented by the store's
dataset (flips/rotations) and drawn fresh from the stored posterior moments. Every batch gives
each modality a role — generate, condition or absent (:mod:`geocopgen.models.objective`) — and
the loss is the MSE of the generated ones' noise (or velocity) prediction.

Randomness follows the loop's contract: the absent set is drawn from the *step* (so every DDP
process agrees on the token set), everything per sample (generate/condition, timestep, noise)
from the sample's own seed. Parameters of modalities absent from a batch get an exact zero
gradient, so DDP (which wants a gradient for every parameter) and a single process update
identically.

Config::

    model: {embed_dim: 256, depth: 8, num_heads: 4, patch_size: 4, mlp_ratio: 4.0,
            qkv_bias: false, roles: {generate: 0.5, condition: 0.3, absent: 0.2},
            prediction_type: epsilon}
    data:  {store: latents.zarr, modalities: [], autoencoders: {s2l2a: path, ...},
            include_places: [], exclude_places: [], val_places: [], min_valid: 0.5,
            augment: true, sample_posterior: true}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from geocopgen.errors import ConfigError
from geocopgen.latents.dataset import LatentDataset
from geocopgen.latents.encode import codec_identity
from geocopgen.latents.store import LatentStore
from geocopgen.modalities import OFFICIAL_ORDER, get_modality
from geocopgen.models.autoencoder import ModalityAutoencoder
from geocopgen.models.checkpoints import load_model, save_model
from geocopgen.models.objective import RoleProbabilities, Roles, diffusion_loss, draw_roles
from geocopgen.models.pipeline import CopGenPipeline
from geocopgen.models.schedule import (
    NUM_TRAIN_TIMESTEPS,
    check_prediction_type,
    default_scheduler,
    training_scheduler,
)
from geocopgen.models.uvit import MultimodalUViT
from geocopgen.training import randomness
from geocopgen.training.config import TrainConfig, config_from_dict, load_config
from geocopgen.training.data import BackboneDataConfig, chip_subset
from geocopgen.training.distributed import DistInfo
from geocopgen.training.loop import Trainer
from geocopgen.training.stage import StageResult, validate_final

log = logging.getLogger(__name__)

EXPORT_DIR = "pipeline"
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class BackboneModelConfig:
    """The ``model`` section: backbone size and the role probabilities of the objective."""

    embed_dim: int = 256
    depth: int = 8
    num_heads: int = 4
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    roles: RoleProbabilities = field(default_factory=RoleProbabilities)
    prediction_type: str = "epsilon"  # or "v_prediction" (see geocopgen.models.schedule)

    def __post_init__(self) -> None:
        check_prediction_type(self.prediction_type)


# --- the store --------------------------------------------------------------------------------
def open_training_store(data: BackboneDataConfig) -> tuple[LatentStore, list[str]]:
    """Open the store and check it can train a backbone on ``data.modalities``."""
    if not data.store:
        raise ConfigError("data.store is empty; give the path of a latent store (zarr)")
    store = LatentStore.open(data.store)
    mods = [get_modality(m).name for m in data.modalities] or store.modalities
    mods = sorted(set(mods), key=OFFICIAL_ORDER.index)  # one slot order, whatever the store's
    missing = [m for m in mods if m not in store.modalities]
    if missing:
        raise ConfigError(
            f"{data.store}: the store has no {', '.join(missing)} latents (it holds "
            f"{', '.join(store.modalities)}); encode them or drop them from data.modalities"
        )
    grids = {m: tuple(store.group[f"moments/{m}"].shape[2:]) for m in mods}
    if len(set(grids.values())) != 1:
        raise ConfigError(f"{data.store}: latent grids differ between modalities: {grids}")
    if not store.complete.any():
        raise ConfigError(
            f"{data.store}: no complete chip in the store (empty, or an encoding run that never "
            "finished); run `geocopgen encode` to fill it"
        )
    return store, mods


def check_codecs(store: LatentStore, autoencoders: Mapping[str, str]) -> dict[str, Any]:
    """Load the named autoencoders and refuse any that did not write the store's latents."""
    codecs = {}
    for name, path in autoencoders.items():
        m = get_modality(name).name
        if m not in store.modalities:
            raise ConfigError(f"data.autoencoders names {m}, which {store.path} does not hold")
        ae = load_model(ModalityAutoencoder, path)
        have, want = codec_identity(ae)["hash"], store.codecs[m]["codec"]["hash"]
        if have != want:
            raise ConfigError(
                f"{path}: this {m} autoencoder (hash {have}) did not write the latents in "
                f"{store.path} (hash {want}); point data.autoencoders at the codec that encoded "
                "the store, or re-encode the store with this one"
            )
        codecs[m] = ae
    return codecs


def build_backbone(
    spec: BackboneModelConfig, store: LatentStore, mods: Sequence[str]
) -> MultimodalUViT:
    """A backbone shaped for the store's latents (channels per modality, latent grid)."""
    shapes = {m: store.group[f"moments/{m}"].shape for m in mods}
    channels = {m: int(s[1]) // 2 for m, s in shapes.items()}
    size = int(next(iter(shapes.values()))[2])
    if size % spec.patch_size:
        raise ConfigError(
            f"{store.path}: latent grid {size} is not a multiple of model.patch_size="
            f"{spec.patch_size}"
        )
    return MultimodalUViT(
        modalities=list(mods),
        latent_channels=channels
        if len(set(channels.values())) > 1
        else next(iter(channels.values())),
        latent_size=size,
        patch_size=spec.patch_size,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=spec.mlp_ratio,
        qkv_bias=spec.qkv_bias,
    )


# --- the loss ---------------------------------------------------------------------------------
def draw_sample_roles(
    names: Sequence[str], probabilities: RoleProbabilities, step_seed: int, seeds: torch.Tensor
) -> Roles:
    """The absent set from the step, generate/condition per sample from its own seed."""
    present = draw_roles(names, 1, probabilities, torch.Generator().manual_seed(step_seed)).present
    no_absent = RoleProbabilities(probabilities.generate, probabilities.condition, 0.0)
    per_sample = [
        draw_roles(present, 1, no_absent, g).generated for g in randomness.generators(seeds, salt=1)
    ]
    generated = {n: torch.cat([s[n] for s in per_sample]) for n in present}
    return Roles(present=present, generated=generated)


def make_loss(
    names: Sequence[str],
    probabilities: RoleProbabilities,
    config: TrainConfig,
    prediction_type: str = "epsilon",
):
    """The stage-2 ``loss_fn(model, batch, seeds)`` (see the module docstring)."""
    scheduler = training_scheduler(prediction_type)
    seed, batch_size = config.loop.seed, config.loop.batch_size

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], seeds: torch.Tensor):
        step = randomness.step_of(seeds, seed, batch_size)
        roles = draw_sample_roles(names, probabilities, seed * 1_000_003 + step, seeds)
        gens = randomness.generators(seeds, salt=2)
        timesteps = {n: randomness.randint(gens, NUM_TRAIN_TIMESTEPS) for n in roles.present}
        noise = {n: randomness.randn(gens, batch[n].shape[1:]) for n in roles.present}
        out = diffusion_loss(model, scheduler, batch, roles, timesteps=timesteps, noise=noise)
        # every parameter takes part (absent modalities with an exact zero), so DDP and a single
        # process see the same gradients and AdamW updates
        touch = sum(p.reshape(-1)[0] for p in model.parameters()) * 0.0
        logs = {n: float(v) for n, v in out.per_modality.items()}
        return out.loss + touch, logs

    return loss_fn


def make_validation(
    dataset: Subset | LatentDataset,
    names: Sequence[str],
    n_chips: int = 16,
    prediction_type: str = "epsilon",
):
    """``val_fn(ema_model)``: per modality, the loss of generating it from all the others on
    fixed chips, timesteps and noise (comparable from one validation to the next)."""
    scheduler = training_scheduler(prediction_type)
    chips = [dataset[i] for i in range(min(n_chips, len(dataset)))]
    batch = {n: torch.stack([c[n] for c in chips]) for n in names}
    gens = randomness.generators(range(len(chips)), salt=3)
    timesteps = torch.linspace(50, NUM_TRAIN_TIMESTEPS - 50, len(chips)).long()
    noise = {n: randomness.randn(gens, batch[n].shape[1:]) for n in names}

    def val_fn(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        out = {}
        for target in names:
            generated = {n: torch.full((len(chips),), n == target) for n in names}
            roles = Roles(present=list(names), generated=generated)
            res = diffusion_loss(
                model,
                scheduler,
                {n: v.to(device) for n, v in batch.items()},
                roles,
                timesteps=dict.fromkeys(names, timesteps),
                noise=noise,
            )
            out[f"val_{target}"] = float(res.loss)
        return out

    return val_fn


# --- the entry point --------------------------------------------------------------------------
def backbone_sections(config: TrainConfig) -> tuple[BackboneModelConfig, BackboneDataConfig]:
    """Parse the stage's free-form sections strictly (unknown keys are errors)."""
    return (
        config_from_dict(BackboneModelConfig, config.model, where="model"),
        config_from_dict(BackboneDataConfig, config.data, where="data"),
    )


def train_backbone(
    config: TrainConfig | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    device: str | torch.device | None = None,
    dist_info: DistInfo | None = None,
) -> StageResult:
    """Train (or resume) the backbone on a latent store; export to ``out_dir/pipeline``. A
    COP-GEN store (one array per slot) trains a COP-GEN-layout model instead
    (:func:`geocopgen.training.copgen.train_copgen`, export ``out_dir/model``).

    With ``data.autoencoders`` the export is a complete :class:`CopGenPipeline` (backbone EMA
    weights, DPM-Solver++ scheduler, the codecs); without, the backbone alone
    (``out_dir/backbone``).
    """
    config = load_config(config) if isinstance(config, (str, Path)) else config
    from geocopgen.training.copgen import is_copgen_store, train_copgen

    if is_copgen_store(str(config.data.get("store", ""))):
        return train_copgen(config, out_dir, resume=resume, device=device, dist_info=dist_info)
    spec, data = backbone_sections(config)
    store, mods = open_training_store(data)
    codecs = check_codecs(store, data.autoencoders)
    full = LatentDataset(
        store, mods, augment=data.augment, sample=data.sample_posterior, min_valid=data.min_valid
    )
    exclude = (*data.exclude_places, *data.val_places)
    train_set = chip_subset(full, data.include_places, exclude)
    if len(train_set) == 0:
        raise ConfigError(
            f"{data.store}: no chip is left to train on after include_places="
            f"{list(data.include_places)}, exclude_places={list(data.exclude_places)}, "
            f"val_places={list(data.val_places)} and min_valid={data.min_valid}"
        )
    val_fn = None
    if config.loop.val_every:
        plain = LatentDataset(store, mods, augment=False, sample=False, min_valid=data.min_valid)
        val_set = (
            chip_subset(plain, data.val_places, ())
            if data.val_places
            else chip_subset(plain, data.include_places, exclude)  # fixed training chips
        )
        if len(val_set) == 0:
            raise ConfigError(
                f"{data.store}: data.val_places={list(data.val_places)} match no chip"
            )
        val_fn = make_validation(val_set, mods, prediction_type=spec.prediction_type)
    torch.manual_seed(config.loop.seed)
    backbone = build_backbone(spec, store, mods)
    trainer = Trainer(
        backbone,
        train_set,
        make_loss(mods, spec.roles, config, spec.prediction_type),
        config,
        Path(out_dir) / CHECKPOINT_DIR,
        val_fn=val_fn,
        device=device,
        dist_info=dist_info,
    )
    result = trainer.fit(resume=resume)
    validate_final(trainer, result)
    export = Path(out_dir) / (EXPORT_DIR if codecs else "backbone")
    if trainer.dist.is_main:
        ema = trainer.ema_model().cpu()
        if codecs:
            scheduler = default_scheduler(spec.prediction_type)
            CopGenPipeline(ema, scheduler, codecs).save_pretrained(export)
        else:
            save_model(ema, export)
        log.info("exported the backbone to %s", export)
    return StageResult(model_dir=export, train=result, extra={"chips": len(train_set)})
