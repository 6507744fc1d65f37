"""A COP-GEN-layout backbone trained from a per-slot latent store, on the one training loop.

``geocopgen train backbone CONFIG`` comes here when ``data.store`` is a COP-GEN store
(:mod:`geocopgen.latents.slots`). The objective is the bundled recipe's
(:class:`~geocopgen.copgen.train.Objective`: random roles per modality, a time per item,
epsilon / sample / v_prediction targets over the model's first guess when it has one); the loop
is :class:`~geocopgen.training.loop.Trainer` (EMA, exact resume, DDP, step and wall-time
budgets). Roles are drawn from the step, times and noise from each sample's seed, so a resumed
run and a DDP run replay an unbroken single-process run.

Config::

    model: {init: DIR | default | "",   # fine-tune this CopgenModel folder; "" trains from scratch
            freeze: [glob, ...],        # parameter names kept as they are (fnmatch)
            new_slots: [slot key, ...], # slots whose patch embedding, head and position rows
                                        # start fresh (e.g. a modality the init never saw)
            backbone: {embed_dim, depth, num_heads, patch_size, prediction,
                       p_drop_condition, p_drop_scalar}}   # copgen.train.BackboneSettings
    data:  {store, modalities, include_places, exclude_places, min_valid, augment,
            sample_posterior}

The export, ``OUT/model``, is a :class:`~geocopgen.copgen.model.CopgenModel` folder: the EMA
backbone with the init model's codecs (or the encoding model's), slot layout, normalisation,
sampler preset and first guess, which ``geocopgen translate --model OUT/model`` loads.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from geocopgen.copgen import vae as vae_ops
from geocopgen.copgen.layout import MODALITY_SLOTS, modality_of_slot
from geocopgen.copgen.model import CopgenModel
from geocopgen.copgen.places import MIN_VALID
from geocopgen.copgen.published import layout_config
from geocopgen.copgen.train import BackboneSettings, Objective, augment, loss_of
from geocopgen.errors import ConfigError
from geocopgen.latents.encode import codec_identity
from geocopgen.latents.store import LatentStore
from geocopgen.models.schedule import NUM_TRAIN_TIMESTEPS
from geocopgen.models.uvit import MultimodalUViT
from geocopgen.training import randomness
from geocopgen.training.config import TrainConfig, config_from_dict
from geocopgen.training.data import BackboneDataConfig, chip_subset
from geocopgen.training.distributed import DistInfo
from geocopgen.training.loop import Trainer
from geocopgen.training.stage import StageResult
from geocopgen.weights import resolve_model

log = logging.getLogger(__name__)

EXPORT_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
#: BackboneSettings fields the shared sections own (optim, loop, ema): refused under backbone.
LOOP_OWNED = (
    "batch_size", "lr", "weight_decay", "warmup_steps", "ema_decay", "minutes", "max_steps",
    "seed", "checkpoint_every", "cross_fitted_guess",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CopgenModelConfig:
    """The ``model`` section of a COP-GEN run (see the module docstring)."""

    init: str = ""
    freeze: tuple[str, ...] = ()
    new_slots: tuple[str, ...] = ()
    backbone: dict[str, Any] = dataclasses.field(default_factory=dict)


def is_copgen_store(path: str) -> bool:
    """Whether ``path`` is a COP-GEN latent store (anything unreadable: no)."""
    try:
        return bool(path) and LatentStore.open(path).kind == "copgen"
    except Exception:  # the 4-modality path says what is wrong with it
        return False


def settings_of(
    config: TrainConfig, spec: CopgenModelConfig, base: CopgenModel | None
) -> BackboneSettings:
    """The recipe's settings for this run: architecture and objective from ``model.backbone``
    (the objective's prediction defaults to the init model's), the rest from the shared
    sections."""
    owned = sorted(set(spec.backbone) & set(LOOP_OWNED))
    if owned:
        raise ConfigError(
            f"model.backbone: {', '.join(owned)} belong to the shared sections (optim.lr, "
            "optim.weight_decay, optim.warmup_steps, loop.batch_size, loop.seed, loop.steps, "
            "loop.minutes, loop.ckpt_every, ema.decay); set them there"
        )
    values = dict(spec.backbone)
    if base is not None:
        values.setdefault("prediction", base.prediction)
        if values["prediction"] != base.prediction:
            raise ConfigError(
                f"model.backbone.prediction={values['prediction']!r}, but {spec.init} predicts "
                f"{base.prediction!r}; a fine-tune keeps its init model's target"
            )
    settings = config_from_dict(BackboneSettings, values, where="model.backbone")
    return dataclasses.replace(
        settings, batch_size=config.loop.batch_size, lr=config.optim.lr, seed=config.loop.seed
    )


# --- the data ---------------------------------------------------------------------------------
class SlotLatentDataset(Dataset):
    """Complete chips of a COP-GEN store whose every slot is valid enough: per item the slots'
    latents (``sf·mean``, or a posterior sample), co-augmented by one of the 8 flips and
    quarter turns, the chip centre's lon/lat and the date (``""`` when unknown). Randomness
    comes from torch's global generator, which the loop seeds per sample."""

    def __init__(
        self,
        store: LatentStore,
        keys: Sequence[str],
        scale: Mapping[str, float],
        *,
        min_valid: float = 0.9,
        augment: bool = True,
        sample: bool = False,
    ) -> None:
        valid = store.group["chips/valid"][:]
        columns = [store.modalities.index(k) for k in keys]
        ok = store.complete & (valid[:, columns] >= min_valid).all(axis=1)
        self.index = np.flatnonzero(ok)
        self.keys_all = store.keys()
        self.keys = [self.keys_all[i] for i in self.index]  # what chip_subset filters on
        self.store, self.slots, self.scale = store, list(keys), dict(scale)
        self.augment, self.sample = augment, sample
        self.lonlat = store.group["chips/lonlat"][:]
        self.dates = [str(d) for d in store.group["chips/datetime"][:]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.index[i])
        latents = {}
        for key in self.slots:
            moments = torch.from_numpy(self.store.moments(key, slice(j, j + 1)))
            sf = self.scale[key]
            z = (
                vae_ops.sample_posterior(moments, sf)
                if self.sample
                else vae_ops.posterior_mode(moments, sf)
            )
            latents[key] = z[0]
        if self.augment:
            latents = augment(latents, int(torch.randint(8, (1,))))
        lon, lat = (float(v) for v in self.lonlat[j])
        return {"latents": latents, "lonlat": torch.tensor([lon, lat]), "date": self.dates[j]}


class SampleNoise:
    """Per-item times and noise, each item from its own generator (see
    :mod:`geocopgen.training.randomness`): the same whichever process draws it."""

    def __init__(self, gens: Sequence[torch.Generator]) -> None:
        self.gens = gens

    def times(self, n: int) -> torch.Tensor:
        return randomness.randint(self.gens, NUM_TRAIN_TIMESTEPS) + 1

    def eps(self, shape: torch.Size) -> torch.Tensor:
        return randomness.randn(self.gens, shape[1:])


def make_loss(objective: Objective, config: TrainConfig):
    """``loss_fn(model, batch, seeds)``: roles from the step (shared by every DDP process),
    times and noise per sample, the recipe's loss. Trainable parameters of slots a batch leaves
    out get an exact zero gradient, so DDP and one process update alike."""
    seed, batch_size = config.loop.seed, config.loop.batch_size

    def loss_fn(model: nn.Module, batch: dict[str, Any], seeds: torch.Tensor):
        device = batch["lonlat"].device
        step = randomness.step_of(seeds, seed, batch_size)
        rng = np.random.default_rng([seed, step])
        latents = {k: v.cpu() for k, v in batch["latents"].items()}
        centres = [(float(lon), float(lat)) for lon, lat in batch["lonlat"].tolist()]
        days = list(batch["date"])
        when = [date.fromisoformat(d[:10]) for d in days] if all(days) else None
        noise = SampleNoise(randomness.generators(seeds, salt=2))
        drawn = objective.roles(latents, centres, when, "", rng, noise)
        for field in (drawn.inputs, drawn.times, drawn.targets):
            for k, v in field.items():
                field[k] = v.to(device)
        loss = loss_of(model, drawn)
        touch = sum(p.reshape(-1)[0] for p in model.parameters() if p.requires_grad) * 0.0
        return loss + touch, {}

    return loss_fn


# --- the model --------------------------------------------------------------------------------
def codec_folder(store: LatentStore, keys: Sequence[str]) -> Path:
    """The model folder whose codecs wrote the store's slots (one, recorded per slot)."""
    folders = {store.codecs[k]["codec"]["name"] for k in keys}
    if len(folders) != 1:
        raise ConfigError(f"{store.path}: slots were encoded by several models {sorted(folders)}")
    return Path(folders.pop())


def check_store_codecs(
    store: LatentStore, keys: Sequence[str], model: CopgenModel, where: str
) -> None:
    """Refuse a model whose codec for a slot did not write the store's latents."""
    for key in keys:
        want = store.codecs[key]["codec"]["hash"]
        if key not in model.vaes:
            raise ConfigError(
                f"{where} has no {key} codec, but {store.path} holds {key} latents; list "
                f"{key} in model.new_slots to learn it with the store's codec, or drop its "
                "modality from data.modalities"
            )
        have = codec_identity(model.vaes[key])["hash"]
        if have != want:
            raise ConfigError(
                f"{where}: its {key} codec (hash {have}) did not write the latents in "
                f"{store.path} (hash {want}); fine-tune the model that encoded the store, or "
                f"re-encode the store with `geocopgen encode ... --model {where}`"
            )


def adopt_codecs(base: CopgenModel, store: LatentStore, keys: Sequence[str]) -> CopgenModel:
    """New slots take the codec that wrote their latents (from the store's encoding model, its
    scale factor into the layout), so the fine-tuned model can encode and decode them."""
    slots, vaes = list(base.layout), dict(base.vaes)
    for key in keys:
        if store.codecs[key]["codec"]["hash"] == (
            codec_identity(base.vaes[key])["hash"] if key in base.vaes else None
        ):
            continue
        folder = codec_folder(store, [key])
        source = CopgenModel.from_pretrained(folder)
        check_store_codecs(store, [key], source, str(folder))
        vaes[key] = source.vaes[key]
        factor = float(vaes[key].config.scaling_factor)
        slots = [dataclasses.replace(s, scale_factor=factor) if s.key == key else s for s in slots]
    return rebuilt(base, slots=slots, vaes=vaes)


def fresh_slots(backbone: MultimodalUViT, keys: Sequence[str], seed: int) -> None:
    """Re-initialise the patch embedding, output head, time-token and position rows of
    ``keys`` as a new backbone of the same config would have them (seeded)."""
    torch.manual_seed(seed)
    fresh = MultimodalUViT(**backbone.config)
    with torch.no_grad():
        for key in keys:
            i = backbone._slot[backbone.canonical(key)]
            backbone.patch_embeds[i].load_state_dict(fresh.patch_embeds[i].state_dict())
            backbone.decoder_preds[i].load_state_dict(fresh.decoder_preds[i].state_dict())
            start, n = backbone._pos_start[key], backbone.geometry[key].n_tokens
            for rows in (slice(i, i + 1), slice(start, start + n)):
                backbone.pos_embed[:, rows] = fresh.pos_embed[:, rows]


def freeze(backbone: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Stop the gradients of parameters whose name matches a pattern; a pattern matching none
    is an error (a typo would otherwise train what was meant to stay)."""
    names = [n for n, _ in backbone.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(
                f"model.freeze: {pattern!r} matches no parameter (they are named like "
                f"{', '.join(names[:4])}, ...)"
            )
    frozen = []
    for name, p in backbone.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def build(
    spec: CopgenModelConfig,
    settings: BackboneSettings,
    store: LatentStore,
    keys: Sequence[str],
    base: CopgenModel | None,
) -> tuple[MultimodalUViT, CopgenModel]:
    """The backbone to train and the model whose codecs, layout and presets the export keeps:
    the init model ``base`` (fine-tuning) or the store's encoding model (from scratch)."""
    if base is not None:
        check_store_codecs(store, [k for k in keys if k not in spec.new_slots], base, spec.init)
        base = adopt_codecs(base, store, [k for k in spec.new_slots if k in keys])
        backbone = MultimodalUViT(**base.backbone.config)
        backbone.load_state_dict(base.backbone.state_dict())
        fresh_slots(backbone, spec.new_slots, settings.seed)
        return backbone, base
    folder = codec_folder(store, keys)
    base = CopgenModel.from_pretrained(folder)
    check_store_codecs(store, keys, base, str(folder))
    slots = [
        dataclasses.replace(s, patch_size=min(settings.patch_size, s.latent_shape[1]))
        if s.kind == "image"
        else s
        for s in base.layout
    ]
    base = rebuilt(base, slots=slots)
    torch.manual_seed(settings.seed)
    config = layout_config(
        slots, embed_dim=settings.embed_dim, depth=settings.depth, num_heads=settings.num_heads
    )
    return MultimodalUViT(**config), base


def rebuilt(base: CopgenModel, **changes: Any) -> CopgenModel:
    """``base`` with some parts replaced (``backbone``, ``vaes``, ``slots``, ``prediction``,
    ...), everything else (presets, normalisation choices, first guess) kept."""
    parts: dict[str, Any] = {
        "backbone": base.backbone, "vaes": base.vaes, "slots": base.layout, "size": base.size,
        "sampler": base.sampler, "ignored": base.ignored, "s2_dn": base.s2_dn,
        "prediction": base.prediction, "first_guess": base.first_guess,
        "default_grid": base.default_grid, "strength": base.strength,
        "provenance": base.provenance,
    }  # fmt: skip
    parts.update(changes)
    return CopgenModel(parts.pop("backbone"), parts.pop("vaes"), **parts)


def export(
    ema: MultimodalUViT, base: CopgenModel, settings: BackboneSettings, run: dict
) -> CopgenModel:
    """The trained backbone with the base model's codecs, layout, normalisation and presets;
    ``run`` is recorded in its provenance (under ``fine_tune`` when it has an ``init``)."""
    dims = (ema.config.embed_dim, ema.config.depth, ema.config.num_heads)
    same = dims == tuple(base.backbone.config[k] for k in ("embed_dim", "depth", "num_heads"))
    return rebuilt(
        base,
        backbone=ema,
        size=base.size if same else None,
        prediction=settings.prediction,
        first_guess=base.first_guess if settings.prediction != "epsilon" else None,
        provenance={**base.provenance, "fine_tune" if "init" in run else "training": run},
    )


# --- the entry point --------------------------------------------------------------------------
def train_copgen(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    device: str | torch.device | None = None,
    dist_info: DistInfo | None = None,
) -> StageResult:
    """Train (fine-tune or from scratch) a COP-GEN-layout backbone on a COP-GEN latent store;
    export ``out_dir/model``."""

    spec = config_from_dict(CopgenModelConfig, config.model, where="model")
    # a slot's chip trains when the recipe would train it (copgen.places.MIN_VALID)
    data = config_from_dict(
        BackboneDataConfig, {"min_valid": MIN_VALID, **config.data}, where="data"
    )
    if config.loop.val_every:
        raise ConfigError(
            "loop.val_every: a COP-GEN store run has no periodic validation yet; set it to 0 "
            "and judge the exported model with `geocopgen evaluate`"
        )
    if data.autoencoders or data.val_places:
        raise ConfigError(
            f"{data.store} is a COP-GEN store: its codecs come from model.init (or the model that "
            "encoded it); drop data.autoencoders and data.val_places"
        )
    store = LatentStore.open(data.store)
    modalities = list(data.modalities) or sorted({modality_of_slot(k) for k in store.modalities})
    keys = [k for m in modalities for k in MODALITY_SLOTS[m]]
    missing = [k for k in keys if k not in store.modalities]
    if missing:
        raise ConfigError(
            f"{data.store}: no {', '.join(missing)} latents (it holds "
            f"{', '.join(store.modalities)}); encode them or drop them from data.modalities"
        )
    base_model = None
    if spec.init:
        base_model = CopgenModel.from_pretrained(resolve_model(spec.init))
    settings = settings_of(config, spec, base_model)
    backbone, base = build(spec, settings, store, keys, base_model)
    frozen = freeze(backbone, spec.freeze)
    scale = {k: base.scale_factor(k) for k in keys}
    full = SlotLatentDataset(
        store, keys, scale, min_valid=data.min_valid, augment=data.augment,
        sample=data.sample_posterior,
    )  # fmt: skip
    train_set = chip_subset(full, data.include_places, data.exclude_places)
    if len(train_set) == 0:
        raise ConfigError(
            f"{data.store}: no complete chip with every slot at least {data.min_valid} valid "
            "is left to train on; run `geocopgen encode ... --model` to fill it"
        )
    objective = Objective(settings, base.first_guess if settings.prediction != "epsilon" else None)
    trainer = Trainer(
        backbone,
        train_set,
        make_loss(objective, config),
        config,
        Path(out_dir) / CHECKPOINT_DIR,
        collate=collate,
        device=device,
        dist_info=dist_info,
    )
    result = trainer.fit(resume=resume)
    target = Path(out_dir) / EXPORT_DIR
    if trainer.dist.is_main:
        provenance = {
            **({"init": str(resolve_model(spec.init))} if spec.init else {}),
            "latent_store": str(Path(data.store).resolve()),
            "steps": trainer.step,
            "frozen": len(frozen),
            "new_slots": list(spec.new_slots),
        }
        export(trainer.ema_model().cpu(), base, settings, provenance).save_pretrained(target)
        log.info("exported the model to %s", target)
    return StageResult(model_dir=target, train=result, extra={"chips": len(train_set)})


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack the items' latents per slot and their lon/lat; dates as a list."""
    keys = items[0]["latents"].keys()
    return {
        "latents": {k: torch.stack([it["latents"][k] for it in items]) for k in keys},
        "lonlat": torch.stack([it["lonlat"] for it in items]),
        "date": [it["date"] for it in items],
    }


__all__ = ["CopgenModelConfig", "SlotLatentDataset", "is_copgen_store", "train_copgen"]
