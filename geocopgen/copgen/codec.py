"""A linear patch autoencoder for one COP-GEN slot: small, fitted in closed form, and honest.

The published COP-GEN VAEs are large convolutional networks trained for days. A model that a
2-core CPU builds needs codecs that reconstruct places they never saw at least as well as the
simplest baseline of every direction using them; a small convolutional VAE trained for minutes
does not (the previous bundled model's L2A codec lost to copying L1C). A principal-component
codec of non-overlapping ``f x f`` patches does, because it is the best linear reconstruction
for its latent size and it is fitted exactly, from covariance sums over every valid patch of
every raster, in seconds.

``PatchCodec`` speaks ``AutoencoderKL``'s language (``encode(x).latent_dist``,
``decode(z).sample``, ``config.scaling_factor``) so the COP-GEN translation code uses either
without knowing which. The latent is whitened: each component divided by its standard deviation
in the fitting data, so every latent channel has unit variance, as diffusion expects.

``keep_means=True`` reserves one latent channel per image channel for the patch mean, and fits
the principal components on what the means leave: a level never seen in fitting (a plateau at
4000 m when the fitting DEMs were lowland) is still reconstructed exactly, not projected onto
components that cannot express it.

``transform="sqrt"`` (Sentinel-2) fits the components on the square root of reflectance and
decodes by squaring: a decoded reflectance is never negative, by construction. The log codecs of
Sentinel-1 and the DEM already bound their outputs (the DEM decodes into [0, 8847] m).

``decoder_reach=r > 0`` gives the decoder overlapping footprints: every pixel is a linear map of
the latents of its own cell and of the ``r`` cells around it (a ``2r+1`` convolution over the
latent grid, then ``pixel_shuffle``), fitted in closed form by least squares on the same data
after the components (:meth:`PatchCodec.fit`). With ``r = 0`` the decoder is the components'
transpose: each ``f x f`` patch is decoded alone, so neighbouring patches meet at an edge
(issue 28's blocks); with ``r = 1`` a pixel near a patch border also sees the patch beyond it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

from geocopgen.errors import ConfigError

Transform = Literal["identity", "sqrt"]
#: The posterior log-variance of a deterministic codec (the VAE code clamps at -30).
DETERMINISTIC_LOGVAR = -30.0


class PatchCodec(ModelMixin, ConfigMixin):
    """Model-unit pixels ``(B, C, H, W)`` ↔ whitened principal components ``(B, L, H/f, W/f)``."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        latent_channels: int = 8,
        downsample: int = 8,
        transform: Transform = "identity",
        keep_means: bool = False,
        scaling_factor: float = 1.0,
        decoder_reach: int = 0,
    ) -> None:
        super().__init__()
        self.register_to_config(out_channels=in_channels)
        if out_channels not in (None, in_channels):
            raise ConfigError("a patch codec reconstructs its input: out_channels = in_channels")
        if transform not in ("identity", "sqrt"):
            raise ConfigError(f"transform must be 'identity' or 'sqrt', got {transform!r}")
        dim = in_channels * downsample**2
        if latent_channels > dim:
            raise ConfigError(f"{latent_channels} latent channels exceed the patch size {dim}")
        if keep_means and latent_channels < in_channels:
            raise ConfigError("keep_means needs a latent channel per image channel")
        if decoder_reach < 0:
            raise ConfigError(f"decoder_reach must be 0 or more cells, got {decoder_reach}")
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.eye(latent_channels, dim))
        self.register_buffer("std", torch.ones(latent_channels))
        if decoder_reach:
            side = 2 * decoder_reach + 1
            self.register_buffer("decoder_weight", torch.zeros(dim, latent_channels, side, side))
            self.register_buffer("decoder_bias", torch.zeros(dim))

    # --- the AutoencoderKL interface ---------------------------------------------------------
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput:
        """Pixels in model units → a deterministic posterior over the whitened components."""
        mean = self.project(x)
        logvar = torch.full_like(mean, DETERMINISTIC_LOGVAR)
        posterior = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput:
        """Whitened components → pixels in model units."""
        return DecoderOutput(sample=self.reconstruct(z))

    # --- the codec itself --------------------------------------------------------------------
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels → whitened components (the posterior mean)."""
        f = self.config.downsample
        patches = F.pixel_unshuffle(self._forward_transform(x), f)  # (B, C·f², h, w)
        centred = patches - self.mean[None, :, None, None]
        coeffs = torch.einsum("bdhw,ld->blhw", centred, self.components)
        return coeffs / self.std[None, :, None, None]

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """Whitened components → pixels."""
        if self.config.decoder_reach:
            patches = self._overlapping(z)
        else:
            coeffs = z * self.std[None, :, None, None]
            patches = torch.einsum("blhw,ld->bdhw", coeffs, self.components)
            patches = patches + self.mean[None, :, None, None]
        return self._inverse_transform(F.pixel_shuffle(patches, self.config.downsample))

    def _overlapping(self, z: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, C·f², h, w)`` from each cell's ``2r+1`` neighbourhood of latents (the
        latent grid's edge repeated outward)."""
        r = self.config.decoder_reach
        padded = F.pad(z, (r, r, r, r), mode="replicate")
        return F.conv2d(padded, self.decoder_weight.to(z.dtype), self.decoder_bias.to(z.dtype))

    def _forward_transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.transform == "sqrt":
            return torch.sqrt(torch.clamp((x + 1.0) / 2.0, min=0.0))
        return x

    def _inverse_transform(self, u: torch.Tensor) -> torch.Tensor:
        if self.config.transform == "sqrt":
            return 2.0 * u.square() - 1.0
        return u

    # --- fitting -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, chips: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> PatchStats:
        """Fit mean, components and whitening from ``(pixels, valid)`` pairs: every patch whose
        pixels are all valid counts (``valid`` ``(B, H, W)`` bool, ``None``: all valid). With a
        ``decoder_reach``, the overlapping decoder is fitted in a second pass over ``chips``
        (give a sequence)."""
        stats = PatchStats(self.mean.numel())
        f = self.config.downsample
        for x, valid in chips:
            patches = F.pixel_unshuffle(self._forward_transform(x.to(torch.float64)), f)
            patches = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
            if valid is not None:
                ok = F.pixel_unshuffle(valid[:, None].to(torch.float64), f).amin(dim=1)
                patches = patches[ok.reshape(-1) > 0]
            stats.add(patches)
        fixed = _channel_means(self.config.in_channels, f) if self.config.keep_means else None
        mean, components, variance = stats.principal(self.config.latent_channels, fixed)
        self.mean.copy_(mean)
        self.components.copy_(components)
        self.std.copy_(variance.clamp_min(1e-12).sqrt())
        if self.config.decoder_reach:
            self._fit_decoder(chips)
        return stats

    @torch.no_grad()
    def _fit_decoder(self, chips: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """The overlapping decoder by least squares: each patch (transformed pixels) regressed
        on its cell's neighbourhood of latents (and a constant), over the patches whose pixels
        are valid and whose neighbourhood lies inside the raster. A tiny ridge keeps the normal
        equations solvable when a component never varies."""
        f, r = self.config.downsample, self.config.decoder_reach
        side, latent = 2 * r + 1, self.config.latent_channels
        n_in = latent * side * side + 1
        gram = torch.zeros(n_in, n_in, dtype=torch.float64)
        cross = torch.zeros(n_in, self.mean.numel(), dtype=torch.float64)
        for x, valid in chips:
            target = F.pixel_unshuffle(self._forward_transform(x.to(torch.float64)), f)
            z = self.project(x.to(torch.float32)).to(torch.float64)
            near = F.unfold(z, side)  # (B, L·side², cells inside the raster's margin)
            h, w = z.shape[-2] - 2 * r, z.shape[-1] - 2 * r
            inner = target[..., r : r + h, r : r + w].reshape(x.shape[0], target.shape[1], -1)
            ok = torch.isfinite(near).all(1) & torch.isfinite(inner).all(1)
            if valid is not None:
                patch_ok = F.pixel_unshuffle(valid[:, None].to(torch.float64), f).amin(dim=1)
                ok &= patch_ok[..., r : r + h, r : r + w].reshape(x.shape[0], -1) > 0
            feats = torch.cat([near, torch.ones_like(near[:, :1])], 1).permute(0, 2, 1)[ok]
            goal = inner.permute(0, 2, 1)[ok]
            gram += feats.T @ feats
            cross += feats.T @ goal
        if gram[-1, -1] < 2:
            raise ConfigError(
                "the overlapping decoder needs valid patches with whole neighbourhoods (and "
                "chips it can read twice: a sequence, not a generator)"
            )
        scale = float(torch.diagonal(gram)[:-1].mean()) + float(gram[-1, -1])  # never 0
        ridge = 1e-6 * scale * torch.eye(n_in, dtype=torch.float64)
        ridge[-1, -1] = 0.0
        solution = torch.linalg.solve(gram + ridge, cross)  # (n_in, C·f²)
        weight = solution[:-1].T.reshape(-1, latent, side, side)
        self.decoder_weight.copy_(weight.float())
        self.decoder_bias.copy_(solution[-1].float())


class PatchStats:
    """Running count, sum and outer-product sum of patch vectors (float64), for one PCA."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, patches: torch.Tensor) -> None:
        finite = torch.isfinite(patches).all(dim=1)
        patches = patches[finite]
        self.n += patches.shape[0]
        self.sum += patches.sum(0)
        self.outer += patches.T @ patches

    def principal(
        self, k: int, fixed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, ``k`` orthonormal components as rows, their variances), float32: the ``fixed``
        rows (orthonormal) first, then the top principal components of what they leave."""
        if self.n < 2:
            raise ConfigError("a patch codec needs at least two valid patches to fit")
        mean = self.sum / self.n
        cov = self.outer / self.n - torch.outer(mean, mean)
        rows = []
        if fixed is not None:
            fixed = fixed.to(cov)
            rest = torch.eye(len(cov), dtype=cov.dtype) - fixed.T @ fixed
            cov_rest = rest @ cov @ rest
            rows.append(fixed)
        else:
            cov_rest = cov
        values, vectors = torch.linalg.eigh(cov_rest)
        order = torch.argsort(values, descending=True)[: k - sum(len(r) for r in rows)]
        top = vectors[:, order].T
        # a fixed sign per component, so two fits of the same data give the same codec
        signs = torch.sign(top[torch.arange(len(top)), top.abs().argmax(dim=1)])
        components = torch.cat([*rows, top * signs[:, None]])
        variances = torch.einsum("kd,de,ke->k", components, cov, components)
        return mean.float(), components.float(), variances.float()


def _channel_means(channels: int, f: int) -> torch.Tensor:
    """Orthonormal rows that take each channel's mean over a ``pixel_unshuffle`` patch."""
    rows = torch.zeros(channels, channels * f * f, dtype=torch.float64)
    for c in range(channels):
        rows[c, c * f * f : (c + 1) * f * f] = 1.0 / f
    return rows


__all__ = ["PatchCodec", "PatchStats"]
