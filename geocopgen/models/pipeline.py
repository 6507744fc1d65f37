"""``CopGenPipeline``: autoencoders + backbone + scheduler, with save/load.

Like a diffusers pipeline it wires components and adds no maths of its own: images (normalised
model units, ``Modality.normalize(x, axis=1)``) are encoded to scaled latents, :func:`sample`
runs, and the generated latents are decoded. Tensors only; georeferencing lives elsewhere.

On disk (``save_pretrained``)::

    pipeline.json                     component classes, modalities, sampler defaults
    backbone/   config.json + diffusion_pytorch_model.safetensors
    scheduler/  scheduler_config.json
    autoencoders/<modality>/  config.json + diffusion_pytorch_model.safetensors

``from_pretrained`` reads such a folder, or a Hugging Face hub repo id when online (the folder
is fetched with ``huggingface_hub.snapshot_download``, JSON and safetensors files only).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from geocopgen._version import __version__
from geocopgen.errors import CheckpointError, ModalityError
from geocopgen.models.autoencoder import LatentCodecMixin, ModalityAutoencoder, ThumbnailAutoencoder
from geocopgen.models.checkpoints import atomic_folder, load_model, read_config, save_model
from geocopgen.models.sampling import (
    Generators,
    Ignored,
    predict_model_output,
    sample,
    sample_chain,
)
from geocopgen.models.schedule import default_scheduler, scheduler_from_config
from geocopgen.models.uvit import MultimodalUViT
from geocopgen.precision import resolve_precision

PIPELINE_CONFIG = "pipeline.json"
FORMAT_VERSION = 1
_CODECS: dict[str, type] = {c.__name__: c for c in (ModalityAutoencoder, ThumbnailAutoencoder)}


@dataclass
class PipelineOutput(BaseOutput):
    """Decoded images (model units) and latents per modality, condition-major items."""

    images: dict[str, torch.Tensor]
    latents: dict[str, torch.Tensor]


class CopGenPipeline:
    """Any-to-any generation over the backbone's modalities.

    ``autoencoders`` maps modality → codec; a modality without one can still be used through
    latents (``condition_latents=``, ``output_type="latent"``). ``ignored``,
    ``num_inference_steps`` and ``sample_posterior`` (encode conditions as a posterior sample
    rather than the mean) are the defaults of each call; the official preset sets ``"noise"``,
    50 and ``True``.
    """

    def __init__(
        self,
        backbone: MultimodalUViT,
        scheduler: SchedulerMixin | None = None,
        autoencoders: Mapping[str, LatentCodecMixin] | None = None,
        *,
        ignored: Ignored = "omit",
        num_inference_steps: int = 20,
        sample_posterior: bool = False,
    ) -> None:
        self.backbone = backbone.eval()
        self.scheduler = scheduler if scheduler is not None else default_scheduler()
        self.autoencoders = {
            backbone.canonical(k): v.eval() for k, v in (autoencoders or {}).items()
        }
        self.ignored: Ignored = ignored
        self.num_inference_steps = num_inference_steps
        self.sample_posterior = sample_posterior
        for name, codec in self.autoencoders.items():
            if codec.config.latent_channels != backbone.channels_of(name):
                raise CheckpointError(
                    f"the {name} autoencoder makes {codec.config.latent_channels} latent channels "
                    f"but the backbone expects {backbone.channels_of(name)}"
                )

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.backbone.modality_names

    def to(self, *args, **kwargs) -> CopGenPipeline:
        """Move every model (``device`` and/or ``dtype``), like ``nn.Module.to``."""
        self.backbone.to(*args, **kwargs)
        for codec in {id(c): c for c in self.autoencoders.values()}.values():
            codec.to(*args, **kwargs)
        return self

    # --- codecs ----------------------------------------------------------------------------------
    def codec(self, name: str) -> LatentCodecMixin:
        name = self.backbone.canonical(name)
        if name not in self.autoencoders:
            raise ModalityError(
                f"this pipeline has no autoencoder for {name!r} (it has "
                f"{', '.join(self.autoencoders) or 'none'}); pass its latents instead"
            )
        return self.autoencoders[name]

    @torch.no_grad()
    def encode(
        self,
        images: Mapping[str, torch.Tensor],
        *,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Normalised images → scaled latents (posterior mean unless ``sample_posterior``)."""
        return {
            self.backbone.canonical(k): self.codec(k).to_latents(
                x, sample=sample_posterior, generator=generator
            )
            for k, x in images.items()
        }

    @torch.no_grad()
    def decode(self, latents: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scaled latents → images (model units)."""
        return {k: self.codec(k).from_latents(z) for k, z in latents.items()}

    # --- generation ------------------------------------------------------------------------------
    def predict_model_output(
        self, latents, conditions=None, timestep=0, *, generator=None, precision=None
    ):
        """One denoising call (:func:`geocopgen.models.sampling.predict_model_output`)."""
        return predict_model_output(
            self.backbone, latents, conditions, timestep, ignored=self.ignored,
            generator=generator, precision=precision,
        )  # fmt: skip

    @torch.no_grad()
    def __call__(
        self,
        generate: Sequence[str],
        conditions: Mapping[str, torch.Tensor] | None = None,
        *,
        condition_latents: Mapping[str, torch.Tensor] | None = None,
        init: Mapping[str, torch.Tensor] | None = None,
        strength: float | Mapping[str, float] = 1.0,
        num_inference_steps: int | None = None,
        num_samples: int = 1,
        generator: Generators = None,
        batch_size: int | None = None,
        latent_shape: tuple[int, int] | None = None,
        ignored: Ignored | None = None,
        output_type: str = "image",
        progress: bool = True,
        precision: str = "auto",
    ) -> PipelineOutput:
        """Generate ``generate`` from ``conditions`` (normalised images) and/or latents.

        ``init`` (images) + ``strength`` re-imagine given modalities; ``output_type="latent"``
        skips decoding; ``precision`` as the official code runs on this device unless said
        otherwise (:mod:`geocopgen.precision`). See :func:`geocopgen.models.sampling.sample`
        for the rest.
        """
        policy = resolve_precision(precision, next(self.backbone.parameters()).device)
        with policy.for_codecs():
            cond = {**self._encode(conditions, generator), **(condition_latents or {})}
            init_latents = self._encode(init, generator)
        out = sample(
            self.backbone,
            self.scheduler,
            generate,
            cond,
            num_inference_steps=num_inference_steps or self.num_inference_steps,
            num_samples=num_samples,
            generator=generator,
            init_latents=init_latents,
            strength=strength,
            batch_size=batch_size,
            latent_shape=latent_shape,
            ignored=ignored or self.ignored,
            progress=progress,
            precision=policy,
        )
        with policy.for_codecs():
            return self._output(out.latents, generate, output_type)

    @torch.no_grad()
    def loop(
        self,
        conditions: Mapping[str, torch.Tensor],
        stages: Sequence[tuple[Sequence[str], Sequence[str]]],
        *,
        num_inference_steps: int | None = None,
        num_samples: int = 1,
        generator: Generators = None,
        output_type: str = "image",
        progress: bool = True,
    ) -> PipelineOutput:
        """Looping generation (generated → condition → generated), e.g.
        ``stages=[(["s2l2a"], ["dem"]), (["dem"], ["s2l2a"])]``; returns the final pool."""
        outs = sample_chain(
            self.backbone,
            self.scheduler,
            self._encode(conditions, generator),
            stages,
            num_samples=num_samples,
            generator=generator,
            num_inference_steps=num_inference_steps or self.num_inference_steps,
            ignored=self.ignored,
            progress=progress,
        )
        latents: dict[str, torch.Tensor] = {}
        for out in outs:
            latents.update(out.latents)
        generated = {self.backbone.canonical(n) for _, gen in stages for n in gen}
        return self._output(latents, sorted(generated), output_type)

    def _encode(self, images, generator: Generators) -> dict[str, torch.Tensor]:
        """Encode with the pipeline's posterior setting; a per-item generator list seeds the
        posterior sample with its first generator (one draw per batch, as the official code)."""
        if isinstance(generator, Sequence):
            generator = generator[0] if generator else None
        return self.encode(
            images or {}, sample_posterior=self.sample_posterior, generator=generator
        )

    def _output(self, latents, generate, output_type: str) -> PipelineOutput:
        if output_type not in ("image", "latent"):
            raise ModalityError(f"output_type must be 'image' or 'latent', got {output_type!r}")
        images = {}
        if output_type == "image":
            wanted = {self.backbone.canonical(n) for n in generate}
            decoded = self.decode({k: v for k, v in latents.items() if k in wanted})
            images = {k: v.float() for k, v in decoded.items()}  # float16 under CUDA autocast
        return PipelineOutput(images=images, latents=latents)

    # --- save / load -----------------------------------------------------------------------------
    def save_pretrained(
        self, folder: str | os.PathLike, *, dtype: torch.dtype | None = None
    ) -> Path:
        """Write the pipeline folder (safetensors + JSON), atomically replacing ``folder``.

        ``dtype=torch.float16`` stores half-size weights (how the bundled model ships); loading
        always computes in float32.
        """
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            save_model(self.backbone, tmp / "backbone", dtype=dtype)
            self.scheduler.save_pretrained(str(tmp / "scheduler"))
            for name, codec in self.autoencoders.items():
                save_model(codec, tmp / "autoencoders" / name, dtype=dtype)
            config = {
                "_class_name": type(self).__name__,
                "format": FORMAT_VERSION,
                "geocopgen_version": __version__,
                "backbone": type(self.backbone).__name__,
                "modalities": list(self.modalities),
                "autoencoders": {k: type(v).__name__ for k, v in self.autoencoders.items()},
                "ignored": self.ignored,
                "num_inference_steps": self.num_inference_steps,
                "sample_posterior": self.sample_posterior,
                "weights_dtype": str(dtype or self.backbone.dtype).removeprefix("torch."),
            }
            (tmp / PIPELINE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(
        cls, path_or_repo: str | os.PathLike, *, revision: str | None = None
    ) -> CopGenPipeline:
        """Load from a local folder, or from a hub repo id (``owner/name``) when online."""
        folder = _resolve(path_or_repo, revision)
        config = read_config(folder / PIPELINE_CONFIG)
        if config.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{folder}: pipeline format {config.get('format')!r}; this geocopgen reads "
                f"format {FORMAT_VERSION}"
            )
        backbone = load_model(MultimodalUViT, folder / "backbone")
        scheduler = scheduler_from_config(
            read_config(folder / "scheduler" / "scheduler_config.json")
        )
        codecs = {}
        for name, class_name in config.get("autoencoders", {}).items():
            if class_name not in _CODECS:
                raise CheckpointError(f"{folder}: unknown autoencoder class {class_name!r}")
            codec = load_model(_CODECS[class_name], folder / "autoencoders" / name)
            codecs[name] = codec.for_inference()
        return cls(
            backbone,
            scheduler,
            codecs,
            ignored=config.get("ignored", "omit"),
            num_inference_steps=config.get("num_inference_steps", 20),
            sample_posterior=config.get("sample_posterior", False),
        )


_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _resolve(path_or_repo: str | os.PathLike, revision: str | None) -> Path:
    """A local folder as is; a hub id through ``snapshot_download`` (JSON + safetensors)."""
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(
                f"{path}: is a file; a geocopgen pipeline is a folder with {PIPELINE_CONFIG}, "
                "backbone/, scheduler/ and autoencoders/"
            )
        return path
    if not _REPO_ID.match(str(path_or_repo)):
        raise CheckpointError(f"{path_or_repo}: no such folder, and not a hub repo id (owner/name)")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id=str(path_or_repo), revision=revision, allow_patterns=["*.json", "*.safetensors"]
        )
    except Exception as err:  # offline, missing repo, auth: all one message
        raise CheckpointError(
            f"{path_or_repo}: not a local folder and the hub download failed ({err}); download "
            "the pipeline folder and pass its path"
        ) from None
    return Path(local)
