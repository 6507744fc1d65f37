"""A COP-GEN model as one object and one folder: the published backbone, the VAEs that are present,
the slot layout, the normalisations, the sampler preset and where the weights came from.

The official release is a 1.1 GB pickle-container backbone plus ten VAE files in a hub folder
layout, without configs. :func:`geocopgen.copgen.convert.convert_copgen` turns them once into this
folder, which loads offline, from safetensors only, with every tensor name and shape checked::

    pipeline.json   {"kind": "copgen", "format": 1, size, sampler, slots (layout), vaes, provenance}
    backbone/       config.json + diffusion_pytorch_model.safetensors   (MultimodalUViT)
    vaes/<slot>/    config.json + diffusion_pytorch_model.safetensors   (diffusers AutoencoderKL,
                    scaling_factor = the slot's official scale factor)

A model may lack VAEs (the parity fixtures have three); :attr:`CopgenModel.encodable` says which
slots can be encoded and decoded, the others take latents. :meth:`CopgenModel.resolution_groups`
groups the image slots by ground sample distance, which is what per-resolution canvases need.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from geocopgen._version import __version__
from geocopgen.copgen import normalisation
from geocopgen.copgen import vae as vae_ops
from geocopgen.copgen.codec import PatchCodec
from geocopgen.copgen.first_guess import FirstGuess
from geocopgen.copgen.layout import COPGEN_SLOTS, MODALITY_SLOTS, SLOT_NAMES, CopgenSlot
from geocopgen.copgen.published import COPGEN_SIZES
from geocopgen.copgen.sampler import (
    COPGEN_SAMPLER,
    PREDICTIONS,
    CopgenSamplerPreset,
    Prediction,
    copgen_sample,
)
from geocopgen.errors import CheckpointError, ModalityError
from geocopgen.modalities import OFFICIAL_ORDER
from geocopgen.models.checkpoints import atomic_folder, load_model, read_config, save_model
from geocopgen.models.pipeline import PIPELINE_CONFIG
from geocopgen.models.sampling import Ignored, SamplingOutput
from geocopgen.models.uvit import MultimodalUViT

#: The ``pipeline.json`` discriminator that tells this folder from a ``CopGenPipeline`` folder.
KIND = "copgen"
FORMAT_VERSION = 1
#: The official repository commit whose code the conversion reproduces (spec, header).
OFFICIAL_COMMIT = "453f829234abd7f1cde8a6ad2b51968c37865204"
#: Hub repositories of the published weights.
HUB_BACKBONE_REPO = "mespinosami/copgen-base"
HUB_VAE_REPO = "mespinosami/copgen-vaes"
#: Sampler presets a folder may name; ``"copgen"`` is ``CopgenModel._sample_batch`` (spec A6).
SAMPLER_PRESETS: dict[str, CopgenSamplerPreset] = {"copgen": COPGEN_SAMPLER}
#: What a model's own weights may change in a slot; the rest (ground size, bands, latent shape)
#: is the layout every COP-GEN model shares, so one translation engine serves them all.
TUNABLE_SLOT_FIELDS = ("patch_size", "scale_factor")
#: The codec classes a ``vaes/<slot>`` folder may hold (its ``config.json`` ``_class_name``).
CODEC_CLASSES: dict[str, type] = {"AutoencoderKL": AutoencoderKL, "PatchCodec": PatchCodec}
#: Which digital numbers a model's Sentinel-2 slots were trained on (see ``dn_offset_for``).
S2_DN_CHOICES = ("stored", "reflectance")

Codec = AutoencoderKL | PatchCodec
#: The sub-folder of a model's first guess (when it has one).
FIRST_GUESS = "first_guess"
Progress = Callable[[str], None]


def slot_record(s: CopgenSlot) -> dict[str, Any]:
    """One slot as JSON (tuples as lists), as written to and compared from ``pipeline.json``."""
    return json.loads(json.dumps(dataclasses.asdict(s)))


class CopgenModel:
    """A COP-GEN model: backbone, per-slot codecs, normalisations and sampler preset.

    The published COP-GEN is one; geocopgen's bundled model is another, with a small backbone and
    :class:`~geocopgen.copgen.codec.PatchCodec` codecs. Both share the slot layout (ground size,
    bands, latent shapes); ``slots`` may change a slot's ``patch_size`` and ``scale_factor``
    (:data:`TUNABLE_SLOT_FIELDS`), default: the official ones.

    ``vaes`` maps image-slot keys to codecs (``AutoencoderKL`` or ``PatchCodec``) whose
    ``scaling_factor`` is the slot's; slots without one are used through latents. ``ignored`` is
    the default for slots that are neither generated nor conditions (``"noise"``: the official
    behaviour; ``"omit"`` leaves them out). ``s2_dn`` says which Sentinel-2 digital numbers the
    model was trained on (``"stored"``: as products deliver them, the official; ``"reflectance"``:
    reflectance x 10 000). ``prediction`` is what the backbone outputs: the noise
    (``"epsilon"``, the published), the clean latent (``"sample"``) or the velocity
    (``"v_prediction"``, see :func:`~geocopgen.copgen.sampler.as_noise`); ``first_guess``
    (optional) is the latent regression the backbone predicts the residual of
    (:mod:`geocopgen.copgen.first_guess`).
    ``default_grid`` is where translations go when the caller does not say: ``"native"`` (each
    group at its own resolution, the published model's) or ``"input"`` (every group resampled
    onto the input's grid, one array, the bundled model's). ``strength`` is where sampling
    starts: 1 from pure noise (the published), below 1 from the first guess noised to
    ``t = strength`` (SDEdit: the backbone may change the guess less; see
    :func:`~geocopgen.copgen.sampler.initial_state`). ``provenance`` records where the
    weights came from.
    """

    def __init__(
        self,
        backbone: MultimodalUViT,
        vaes: Mapping[str, Codec] | None = None,
        *,
        slots: Sequence[CopgenSlot] | None = None,
        size: str | None = None,
        sampler: str = "copgen",
        ignored: Ignored = "noise",
        s2_dn: str = "stored",
        prediction: Prediction = "epsilon",
        first_guess: FirstGuess | None = None,
        default_grid: str = "native",
        strength: float = 1.0,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        if tuple(backbone.modality_names) != SLOT_NAMES:
            raise CheckpointError(
                f"a COP-GEN backbone indexes the slots as {', '.join(SLOT_NAMES)}; this one has "
                f"{', '.join(backbone.modality_names)}. Build it with copgen_backbone()"
            )
        if sampler not in SAMPLER_PRESETS:
            raise CheckpointError(
                f"unknown COP-GEN sampler preset {sampler!r}; known: {', '.join(SAMPLER_PRESETS)}"
            )
        if prediction not in PREDICTIONS:
            raise CheckpointError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if default_grid not in ("native", "input", "model"):
            raise CheckpointError(
                f"default_grid must be 'native', 'input' or 'model', got {default_grid!r}"
            )
        if s2_dn not in S2_DN_CHOICES:
            raise CheckpointError(f"s2_dn must be one of {S2_DN_CHOICES}, got {s2_dn!r}")
        if not 0.0 < strength <= 1.0:
            raise CheckpointError(f"strength must be in (0, 1], got {strength!r}")
        self.layout = check_slots(slots if slots is not None else COPGEN_SLOTS)
        self._by_key = {s.key: s for s in self.layout}
        vaes = dict(vaes or {})
        for key, vae in vaes.items():
            if key not in self._by_key:
                raise CheckpointError(f"{key!r} is not a COP-GEN slot; VAEs belong to image slots")
            _check_vae(self._by_key[key], vae)
        self.backbone = backbone.eval()
        self.vaes = {k: vaes[k].eval() for k in SLOT_NAMES if k in vaes}
        self.size = size
        self.sampler = sampler
        self.ignored: Ignored = ignored
        self.s2_dn = s2_dn
        self.default_grid = default_grid
        self.prediction: Prediction = prediction
        if first_guess is not None and prediction == "epsilon":
            raise CheckpointError("a first guess needs a 'sample' or 'v_prediction' backbone")
        self.first_guess = first_guess.eval() if first_guess is not None else None
        self.strength = float(strength)
        self.provenance = dict(provenance or {})

    # --- layout ----------------------------------------------------------------------------------
    @property
    def slots(self) -> tuple[CopgenSlot, ...]:
        """All twelve slots in network order (keys, kinds, latent shapes, bands, scale factors)."""
        return self.layout

    @property
    def encodable(self) -> tuple[str, ...]:
        """Image slots this model can encode and decode (those with a VAE), in slot order."""
        return tuple(self.vaes)

    @property
    def modalities(self) -> tuple[str, ...]:
        """geocopgen's four-modality registry names this model encodes and decodes whole (every
        group), in registry order: what ``evaluate`` and the pipeline interface speak."""
        return tuple(m for m in OFFICIAL_ORDER if all(k in self.vaes for k in MODALITY_SLOTS[m]))

    @property
    def preset(self) -> CopgenSamplerPreset:
        """The sampler settings named by :attr:`sampler`, starting at ``t = strength``."""
        preset = SAMPLER_PRESETS[self.sampler]
        if self.strength == 1.0:
            return preset
        return dataclasses.replace(preset, t_start=self.strength)

    def slot(self, key: str) -> CopgenSlot:
        """The slot ``key``; a :class:`ModalityError` naming the slots otherwise."""
        if key not in self._by_key:
            raise ModalityError(f"no COP-GEN slot {key!r}; the slots are {', '.join(SLOT_NAMES)}")
        return self._by_key[key]

    def resolution_groups(self) -> dict[float, tuple[str, ...]]:
        """Image slots by ground sample distance in metres (10, 20, 30, 60), slot order inside."""
        groups: dict[float, list[str]] = {}
        for s in self.layout:
            if s.kind == "image" and s.resolution is not None:
                groups.setdefault(s.resolution, []).append(s.key)
        return {res: tuple(keys) for res, keys in sorted(groups.items())}

    def vae(self, key: str) -> Codec:
        """The VAE of image slot ``key``; a :class:`ModalityError` when this model has none."""
        if key not in self.vaes:
            self.slot(key)
            raise ModalityError(
                f"this COP-GEN model has no VAE for {key} (it has "
                f"{', '.join(self.vaes) or 'none'}); pass its latents instead"
            )
        return self.vaes[key]

    def scale_factor(self, key: str) -> float:
        """The latent scale factor of image slot ``key`` (the official one unless this model's
        codecs say otherwise)."""
        factor = self.slot(key).scale_factor
        if factor is None:
            raise ModalityError(f"{key} is a scalar slot: its vector is the latent, unscaled")
        return factor

    # --- pixels <-> model units <-> latents -------------------------------------------------------
    def to_model(self, x: Any, key: str, **kwargs: Any) -> Any:
        """Physical values → model units in [-1, 1] (the official ``pre_process_data``)."""
        return normalisation.to_model(x, key, **kwargs)

    def from_model(self, y: Any, key: str) -> Any:
        """Model units → physical values (the official ``post_process_data``)."""
        return normalisation.from_model(y, key)

    @torch.no_grad()
    def encode(self, key: str, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Model-unit pixels → scaled latent (``sf·mean``; ``sample=True`` for the official
        posterior sample), see :func:`geocopgen.copgen.vae.encode`."""
        return vae_ops.encode(self.vae(key), x, **kwargs)

    @torch.no_grad()
    def decode(self, key: str, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent → model-unit pixels, with the official ``float32(1/sf)`` multiply."""
        return vae_ops.decode(self.vae(key), z)

    def sample(
        self,
        generate: Sequence[str],
        conditions: Mapping[str, torch.Tensor] | None = None,
        *,
        steps: int | None = None,
        preset: CopgenSamplerPreset | None = None,
        **kwargs: Any,
    ) -> SamplingOutput:
        """Generate latents with this model's preset, or ``preset``, with ``steps`` model calls
        where given (the CLI's ``--steps``), in the precision the official code runs on this
        device unless ``precision=`` says otherwise (:mod:`geocopgen.precision`); other
        keywords as :func:`copgen_sample`."""
        kwargs.setdefault("precision", "auto")
        preset = preset or self.preset
        if steps is not None:
            preset = dataclasses.replace(preset, steps=steps)
        kwargs.setdefault("ignored", self.ignored)
        kwargs.setdefault("prediction", self.prediction)
        kwargs.setdefault("first_guess", self.first_guess)
        return copgen_sample(self.backbone, generate, conditions, preset=preset, **kwargs)

    def to(self, *args: Any, **kwargs: Any) -> CopgenModel:
        """Move the backbone and every VAE (``device`` and/or ``dtype``), like ``nn.Module.to``."""
        self.backbone.to(*args, **kwargs)
        for vae in self.vaes.values():
            vae.to(*args, **kwargs)
        if self.first_guess is not None:
            self.first_guess.to(*args, **kwargs)
        return self

    # --- save / load ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The ``pipeline.json`` content."""
        return {
            "_class_name": type(self).__name__,
            "kind": KIND,
            "format": FORMAT_VERSION,
            "geocopgen_version": __version__,
            "size": self.size,
            "sampler": self.sampler,
            "ignored": self.ignored,
            "s2_dn": self.s2_dn,
            "prediction_type": self.prediction,
            "first_guess": self.first_guess is not None,
            "default_grid": self.default_grid,
            "strength": self.strength,
            "slots": [{**slot_record(s), "vae": s.key in self.vaes} for s in self.layout],
            "vaes": list(self.vaes),
            "provenance": self.provenance,
        }

    def save_pretrained(
        self, folder: str | os.PathLike, *, dtype: torch.dtype | None = None
    ) -> Path:
        """Write the model folder (safetensors + JSON), atomically replacing ``folder``;
        ``dtype=torch.float16`` halves it (loading always computes in float32)."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self._write(tmp, dtype=dtype)
        return folder

    def _write(self, folder: Path, *, dtype: torch.dtype | None = None) -> None:
        """Write the folder's files into the existing, empty ``folder`` (no atomicity)."""
        save_model(self.backbone, folder / "backbone", dtype=dtype)
        for key, vae in self.vaes.items():  # patch codecs are small: float32 keeps them exact
            keep = dtype if isinstance(vae, AutoencoderKL) else None
            save_model(vae, folder / "vaes" / key, dtype=keep)
        if self.first_guess is not None:  # a regression: kept in float32, it is small
            save_model(self.first_guess, folder / FIRST_GUESS)
        (folder / PIPELINE_CONFIG).write_text(json.dumps(self.config(), indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, path_or_repo: str | os.PathLike, *, revision: str | None = None
    ) -> CopgenModel:
        """Load a model folder, or (online) a converted folder on the hub. The published
        weights themselves (``mespinosami/copgen-base``) are converted on loading by
        :func:`geocopgen.copgen.convert.load_copgen`."""
        from geocopgen.models.pipeline import _resolve

        return cls.read(_resolve(path_or_repo, revision))

    @classmethod
    def read(cls, folder: Path) -> CopgenModel:
        """Load a local model folder with strict checks of its config, layout and weights."""
        config = read_config(folder / PIPELINE_CONFIG)
        _check_header(folder, config)
        slots = _recorded_slots(folder, config)
        backbone = load_model(MultimodalUViT, folder / "backbone")
        _check_size(folder, config.get("size"), backbone)
        vaes = {key: _load_codec(folder / "vaes" / key) for key in _listed_vaes(folder, config)}
        first_guess = (
            load_model(FirstGuess, folder / FIRST_GUESS) if config.get("first_guess") else None
        )
        try:
            return cls(
                backbone,
                vaes,
                slots=slots,
                s2_dn=config.get("s2_dn", "stored"),
                prediction=config.get("prediction_type", "epsilon"),
                first_guess=first_guess,
                default_grid=config.get("default_grid", "native"),
                strength=config.get("strength", 1.0),
                size=config.get("size"),
                sampler=config.get("sampler", "copgen"),
                ignored=config.get("ignored", "noise"),
                provenance=config.get("provenance"),
            )
        except CheckpointError as err:
            raise CheckpointError(f"{folder}: {err}") from None


def is_copgen_model(path_or_repo: str | os.PathLike) -> bool:
    """Whether ``path_or_repo`` is a COP-GEN model: the published hub id, or a folder whose
    ``pipeline.json`` says ``"kind": "copgen"`` (for dispatching ``load_model``)."""
    path = Path(path_or_repo).expanduser()
    if not path.exists():
        return str(path_or_repo) == HUB_BACKBONE_REPO
    try:
        return json.loads((path / PIPELINE_CONFIG).read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


# --- checks -------------------------------------------------------------------------------------
def check_slots(slots: Sequence[CopgenSlot]) -> tuple[CopgenSlot, ...]:
    """``slots`` as a model's layout: the official slots in network order, differing at most in
    :data:`TUNABLE_SLOT_FIELDS` (a :class:`CheckpointError` naming the first difference)."""
    slots = tuple(slots)
    if tuple(s.key for s in slots) != SLOT_NAMES:
        raise CheckpointError(
            f"a COP-GEN model has the slots {', '.join(SLOT_NAMES)} in that order; got "
            f"{', '.join(s.key for s in slots)}"
        )
    for mine, official in zip(slots, COPGEN_SLOTS, strict=True):
        fixed = {f: v for f, v in slot_record(official).items() if f not in TUNABLE_SLOT_FIELDS}
        have = {f: v for f, v in slot_record(mine).items() if f not in TUNABLE_SLOT_FIELDS}
        if have != fixed:
            field_ = next(f for f in fixed if fixed[f] != have.get(f))
            raise CheckpointError(
                f"slot {mine.key}: {field_} is {have.get(field_)!r}, but every COP-GEN model has "
                f"{fixed[field_]!r} (a model may change only {', '.join(TUNABLE_SLOT_FIELDS)})"
            )
    return slots


def _check_vae(target: CopgenSlot, vae: Codec) -> None:
    """A codec must be for an image slot, with that slot's channels and scale factor."""
    key = target.key
    if target.kind != "image":
        raise CheckpointError(f"{key!r} is not a COP-GEN image slot; VAEs belong to image slots")
    cfg = vae.config
    got = (cfg.in_channels, cfg.out_channels, cfg.latent_channels, cfg.scaling_factor)
    want = (target.image_channels, target.image_channels, target.latent_shape[0])
    if got != (*want, target.scale_factor):
        raise CheckpointError(
            f"the {key} VAE has in/out/latent channels {got[:3]} and scaling_factor {got[3]}; "
            f"the slot needs {want} and {target.scale_factor}"
        )


def _check_header(folder: Path, config: Mapping[str, Any]) -> None:
    if config.get("kind") != KIND:
        raise CheckpointError(
            f"{folder}: {PIPELINE_CONFIG} has kind {config.get('kind')!r}, not {KIND!r}; "
            "load it with geocopgen.load_model"
        )
    if config.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}: COP-GEN model format {config.get('format')!r}; this geocopgen reads "
            f"format {FORMAT_VERSION}. Convert the official files again"
        )


def _recorded_slots(folder: Path, config: Mapping[str, Any]) -> tuple[CopgenSlot, ...]:
    """The slots ``pipeline.json`` records, which must be this geocopgen's layout (up to the
    tunable fields): a layout change must not load silently."""
    names = {f.name for f in dataclasses.fields(CopgenSlot)}
    try:
        slots = [
            CopgenSlot(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in record.items() if k in names})
            for record in config.get("slots", [])
        ]  # fmt: skip
        return check_slots(slots)
    except (CheckpointError, TypeError) as err:
        raise CheckpointError(
            f"{folder}: the slot layout in {PIPELINE_CONFIG} is not this geocopgen's ({err}); "
            "convert the official files again"
        ) from None


def _load_codec(folder: Path) -> Codec:
    """A ``vaes/<slot>`` folder as the codec class its ``config.json`` names."""
    name = read_config(folder / "config.json").get("_class_name", "AutoencoderKL")
    if name not in CODEC_CLASSES:
        raise CheckpointError(
            f"{folder}: a {name} is not a COP-GEN codec (known: {', '.join(CODEC_CLASSES)})"
        )
    return load_model(CODEC_CLASSES[name], folder).requires_grad_(False)


def _check_size(folder: Path, size: str | None, backbone: MultimodalUViT) -> None:
    if size is None:
        return
    dims = COPGEN_SIZES.get(size)
    have = (backbone.config.embed_dim, backbone.config.depth, backbone.config.num_heads)
    if dims is None or have != (dims.embed_dim, dims.depth, dims.num_heads):
        raise CheckpointError(
            f"{folder}: {PIPELINE_CONFIG} says size {size!r} but backbone/ has embed_dim "
            f"{have[0]}, depth {have[1]}, num_heads {have[2]}"
        )


def _listed_vaes(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """The VAEs ``pipeline.json`` lists, which must be exactly the ``vaes/`` sub-folders."""
    listed = list(config.get("vaes", []))
    root = folder / "vaes"
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    missing = [k for k in listed if k not in present]
    extra = [k for k in present if k not in listed]
    if missing or extra:
        parts = [f"missing vaes/{k}" for k in missing] + [f"unlisted vaes/{k}" for k in extra]
        raise CheckpointError(
            f"{folder}: the VAE folders do not match {PIPELINE_CONFIG}: {', '.join(parts)}"
        )
    return listed


__all__ = [
    "FORMAT_VERSION",
    "HUB_BACKBONE_REPO",
    "HUB_VAE_REPO",
    "KIND",
    "OFFICIAL_COMMIT",
    "SAMPLER_PRESETS",
    "TUNABLE_SLOT_FIELDS",
    "CopgenModel",
    "check_slots",
    "is_copgen_model",
    "slot_record",
]
