"""Latent codecs: per-modality autoencoders and the Stable Diffusion thumbnail VAE.

Both are diffusers ``AutoencoderKL`` models with the same three extra methods
(:class:`LatentCodecMixin`), so the pipeline does not care which one it holds:

* ``encode_moments(x)``: normalised image ``(B, C, H, W)`` → moments ``(B, 2z, H/8, W/8)``
  (mean ‖ logvar), the form latent stores keep;
* ``to_latents(x)``: image → *scaled* latents (posterior mean by default, a posterior sample on
  request), the backbone's input;
* ``from_latents(z)``: scaled latents → image.

:class:`ModalityAutoencoder` is geocopgen's own: ``in_channels`` = the modality's bands, model
units in and out (``Modality.normalize``), a latent scale factor fitted from data
(:func:`fit_scaling_factor`, 1/std of the latents) and stored in its config.
:class:`ThumbnailAutoencoder` is the SD KL-f8 VAE the official weights were trained with, loaded
from a local folder; it expects RGB thumbnails in [-1, 1], which
:mod:`geocopgen.models.thumbnails` makes from physical arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config

from geocopgen.errors import ConfigError
from geocopgen.modalities import get_modality

#: Stable Diffusion's latent scale, which the official COP-GEN-Beta latents use.
SD_SCALING_FACTOR = 0.18215


def sample_latents(
    moments: torch.Tensor,
    scaling_factor: float,
    *,
    sample: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Moments (mean ‖ logvar) → scaled latents, a posterior sample or the mean.

    Training draws a fresh sample every step from stored moments (as the official code does);
    inference defaults to the mean so that a condition gives the same latent every time.
    """
    mean, logvar = moments.chunk(2, dim=1)
    if sample:
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        mean = mean + std * noise
    return mean * scaling_factor


class LatentCodecMixin:
    """The codec interface shared by every ``AutoencoderKL`` geocopgen uses."""

    def for_inference(self) -> LatentCodecMixin:
        """Eval mode with channels-last conv weights: convolutions run 1.4-1.8x faster on CPU
        (measured on the bundled codecs), with the same values to float rounding."""
        self.eval()
        self.to(memory_format=torch.channels_last)
        return self

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs follow the weights' memory layout; a mismatch costs a conversion per conv."""
        if self.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """Image → posterior moments ``(B, 2z, H/8, W/8)``, unscaled."""
        h = self.encoder(self._layout(x))
        h = self.quant_conv(h) if self.quant_conv is not None else h
        return h.contiguous()

    def to_latents(
        self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Image → scaled latents for the backbone."""
        moments = self.encode_moments(x)
        return sample_latents(
            moments, self.config.scaling_factor, sample=sample, generator=generator
        )

    def from_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents → image (model units, or [-1, 1] RGB for thumbnails)."""
        z = self._layout(z / self.config.scaling_factor)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).contiguous()

    @property
    def downsampling(self) -> int:
        """Pixels per latent cell along each axis."""
        return 2 ** (len(self.config.block_out_channels) - 1)


class ModalityAutoencoder(LatentCodecMixin, AutoencoderKL):
    """A small KL autoencoder for one modality's bands, 8x spatial downsampling.

    The defaults (channels 32/64/128/128, one layer per block, 8 latent channels, 3.9M
    parameters) are the size measured to train at about 3 samples/s on 128 px crops on a
    2-core CPU. ``block_out_channels`` must have 4 entries (three halvings = 8x).
    """

    @register_to_config
    def __init__(
        self,
        modality: str = "s2l2a",
        latent_channels: int = 8,
        block_out_channels: Sequence[int] = (32, 64, 128, 128),
        layers_per_block: int = 1,
        norm_num_groups: int = 32,
        mid_block_add_attention: bool = True,
        scaling_factor: float = 1.0,
        sample_size: int = 256,
    ) -> None:
        mod = get_modality(modality)
        if len(block_out_channels) != 4:
            raise ConfigError(
                f"block_out_channels {tuple(block_out_channels)} must have 4 entries so that the "
                "autoencoder downsamples 8x"
            )
        if any(c % norm_num_groups for c in block_out_channels):
            raise ConfigError(
                f"every entry of block_out_channels {tuple(block_out_channels)} must be divisible "
                f"by norm_num_groups={norm_num_groups}"
            )
        n = len(block_out_channels)
        super().__init__(
            in_channels=mod.n_bands,
            out_channels=mod.n_bands,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            force_upcast=False,
            mid_block_add_attention=mid_block_add_attention,
        )
        # AutoencoderKL's own registration stored the canonical modality-free arguments; record
        # the modality under its registry name.
        self.register_to_config(modality=mod.name)

    @property
    def modality(self) -> str:
        return self.config.modality


class ThumbnailAutoencoder(LatentCodecMixin, AutoencoderKL):
    """The Stable Diffusion KL-f8 VAE for official thumbnail mode (RGB [-1, 1], 256 px).

    Load it with ``ThumbnailAutoencoder.from_pretrained(local_folder)`` from a diffusers-layout
    folder (``config.json`` + safetensors), e.g. ``stabilityai/sd-vae-ft-mse`` saved locally.
    Its ``scaling_factor`` is 0.18215 whatever the folder's config says, because the official
    backbone was trained on latents scaled by exactly that.
    """

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> ThumbnailAutoencoder:
        model = super().from_pretrained(*args, **kwargs)
        model.register_to_config(scaling_factor=SD_SCALING_FACTOR)
        return model


@torch.no_grad()
def fit_scaling_factor(
    autoencoder: LatentCodecMixin, images: Iterable[torch.Tensor], *, sample: bool = True
) -> float:
    """Set ``config.scaling_factor`` to 1/std of the unscaled latents of ``images``.

    ``images`` is an iterable of normalised batches (e.g. a few hundred chips); the std is taken
    over every latent value. Returns the new factor.
    """
    total, total_sq, count = 0.0, 0.0, 0
    for x in images:
        z = sample_latents(autoencoder.encode_moments(x), 1.0, sample=sample).double()
        total += z.sum().item()
        total_sq += (z * z).sum().item()
        count += z.numel()
    if count < 2:
        raise ConfigError("fit_scaling_factor needs at least one non-empty batch of images")
    var = total_sq / count - (total / count) ** 2
    factor = float(1.0 / max(var, 1e-12) ** 0.5)
    autoencoder.register_to_config(scaling_factor=factor)
    return factor
