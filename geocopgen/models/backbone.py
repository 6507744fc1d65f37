"""The multimodal U-ViT denoiser: one token sequence over the modalities that are present.

The layout follows the official COP-GEN-Beta ``Triffuser`` (UniDiffuser's post-LayerNorm U-ViT)
so that its weights map one to one, parameter name for parameter name:

* one patch embedding (``patch_embeds.{i}.proj``, a strided ``Conv2d``) and one output head
  (``decoder_preds.{i}``, a ``Linear`` to ``p*p*C`` values laid out as ``(p1, p2, C)``) per
  modality, index ``i`` = the modality's slot in ``config.modalities``;
* one timestep token per modality: the raw sinusoidal embedding (cos first, then sin) of the
  timestep on the 0..1000 scale, 0 meaning "clean";
* a learned position embedding ``pos_embed`` of shape ``(1, M + M*N, D)``: M time-token slots
  first, then M blocks of N patch positions (row-major);
* ``depth/2`` in-blocks, one mid-block and ``depth/2`` out-blocks with long skips popped LIFO and
  fused by ``skip_linear(cat([x, skip]))``; post-LayerNorm blocks; a final shared ``norm``.

What geocopgen adds: a modality may be **absent**. ``forward`` takes only the modalities that are
present (dicts name → latent and name → timestep) and gathers their time-token and patch-position
embeddings from ``pos_embed`` by slot, so an S2L2A→DEM call carries two modalities' tokens, not
four. Latent grids other than the configured ``latent_size`` are accepted: each modality's patch
position block is resized bicubically (an extrapolation the model was not trained on; results are
best at the configured size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from geocopgen.errors import ConfigError, ModalityError, UnknownModalityError
from geocopgen.modalities import OFFICIAL_ORDER, get_modality


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal embedding ``cat([cos(t f), sin(t f)])`` with ``f_i = max_period^(-i/half)``.

    Cos comes first, as in the official model; ``timesteps`` are floats on the 0..1000 scale.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention; the fused ``qkv`` output is ordered ``(q|k|v, head, dim)``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc1`` → exact (erf) GELU → ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Post-LayerNorm transformer block; with ``skip`` it first fuses a long-skip input."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, skip: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim) if skip else None
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.norm1(self.skip_linear(torch.cat([x, skip], dim=-1)))
        x = self.norm2(x + self.attn(x))
        return self.norm3(x + self.mlp(x))


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` → ``(B, H/p * W/p, D)`` tokens, row-major."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


@dataclass
class BackboneOutput(BaseOutput):
    """Noise predictions, one ``(B, C, H, W)`` tensor per modality given to ``forward``."""

    sample: dict[str, torch.Tensor]


class MultimodalUViT(ModelMixin, ConfigMixin):
    """U-ViT over per-modality latents with per-modality timesteps (see the module docstring).

    ``depth`` counts in- plus out-blocks (as in U-ViT; the mid-block comes on top), so the
    official model is ``depth=20``. ``latent_channels`` is one int for every modality or a
    mapping name → channels.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        modalities: Sequence[str] = OFFICIAL_ORDER,
        latent_channels: int | Mapping[str, int] = 8,
        latent_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        names = [get_modality(m).name for m in modalities]
        _check_config(names, latent_channels, latent_size, patch_size, embed_dim, depth, num_heads)
        self.modality_names: tuple[str, ...] = tuple(names)
        self._slot = {name: i for i, name in enumerate(names)}
        self.gradient_checkpointing = False

        grid = latent_size // patch_size
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(self.channels_of(n), embed_dim, patch_size) for n in names
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, len(names) * (1 + grid * grid), embed_dim))
        self.in_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth // 2)
        )
        self.mid_block = Block(embed_dim, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, skip=True) for _ in range(depth // 2)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_preds = nn.ModuleList(
            nn.Linear(embed_dim, patch_size * patch_size * self.channels_of(n)) for n in names
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    # --- facts about the configuration -----------------------------------------------------
    def channels_of(self, name: str) -> int:
        """Latent channels of modality ``name``."""
        channels = self.config.latent_channels
        return int(channels[name] if isinstance(channels, Mapping) else channels)

    @property
    def grid_size(self) -> int:
        """Patch grid side at the configured latent size."""
        return self.config.latent_size // self.config.patch_size

    def canonical(self, name: str) -> str:
        """The registry name of ``name`` (aliases allowed); raise if the model lacks it."""
        try:
            canonical = get_modality(name).name
        except UnknownModalityError:
            canonical = str(name)
        if canonical not in self._slot:
            raise UnknownModalityError(
                f"this model has no modality {name!r}; it was built for "
                f"{', '.join(self.modality_names)}"
            )
        return canonical

    def present(self, names: Sequence[str] | Mapping[str, object]) -> list[str]:
        """Canonical names of ``names`` in the model's slot order; unknown names raise."""
        return sorted({self.canonical(n) for n in names}, key=self._slot.__getitem__)

    # --- forward -----------------------------------------------------------------------------
    def forward(
        self,
        latents: Mapping[str, torch.Tensor],
        timesteps: Mapping[str, torch.Tensor | float],
        return_dict: bool = True,
    ) -> BackboneOutput | tuple[dict[str, torch.Tensor]]:
        """Predict the noise of every modality in ``latents``.

        ``latents``: name → ``(B, C, H, W)`` scaled latents (only the present modalities);
        ``timesteps``: name → a float or a ``(B,)`` tensor on the 0..1000 scale (0 = clean).
        """
        latents = {self.canonical(k): v for k, v in latents.items()}
        timesteps = {self.canonical(k): v for k, v in timesteps.items()}
        names = self.present(latents)
        if set(timesteps) != set(names):
            raise ModalityError(
                f"timesteps are given for {sorted(timesteps)} but latents for {names}; "
                "give one timestep per present modality"
            )
        batch, height, width = self._check_shapes(latents)
        p = self.config.patch_size
        grid = (height // p, width // p)

        time_tokens = [
            timestep_embedding(_as_batch(timesteps[n], batch, latents[n]), self.config.embed_dim)
            .to(latents[n].dtype)
            .unsqueeze(1)
            for n in names
        ]
        patch_tokens = [self.patch_embeds[self._slot[n]](latents[n]) for n in names]
        x = torch.cat(time_tokens + patch_tokens, dim=1) + self.positions(names, grid)

        skips = []
        for blk in self.in_blocks:
            x = self._run(blk, x)
            skips.append(x)
        x = self._run(self.mid_block, x)
        for blk in self.out_blocks:
            x = self._run(blk, x, skips.pop())
        x = self.norm(x)

        n_tok = grid[0] * grid[1]
        out = {}
        for k, name in enumerate(names):
            start = len(names) + k * n_tok
            tokens = self.decoder_preds[self._slot[name]](x[:, start : start + n_tok])
            out[name] = unpatchify(tokens, self.channels_of(name), grid, p)
        return BackboneOutput(sample=out) if return_dict else (out,)

    def positions(self, names: Sequence[str], grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for the sequence ``[t_names..., patches_names...]``."""
        m, side, d = len(self.modality_names), self.grid_size, self.config.embed_dim
        pos = self.pos_embed[0]
        time_rows = [pos[self._slot[n]] for n in names]
        blocks = []
        for n in names:
            start = m + self._slot[n] * side * side
            block = pos[start : start + side * side]
            if grid != (side, side):
                block = (
                    F.interpolate(
                        block.T.reshape(1, d, side, side),
                        size=grid,
                        mode="bicubic",
                        align_corners=False,
                    )
                    .reshape(d, -1)
                    .T
                )
            blocks.append(block)
        return torch.cat([torch.stack(time_rows), *blocks], dim=0).unsqueeze(0)

    def _run(self, blk: Block, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(blk, x, skip)
        return blk(x, skip)

    def _check_shapes(self, latents: Mapping[str, torch.Tensor]) -> tuple[int, int, int]:
        shapes = {}
        for name, z in latents.items():
            want = self.channels_of(name)
            if z.ndim != 4 or z.shape[1] != want:
                raise ModalityError(
                    f"latent of {name!r} has shape {tuple(z.shape)}; the model expects "
                    f"(B, {want}, H, W)"
                )
            shapes[name] = (z.shape[0], z.shape[2], z.shape[3])
        distinct = set(shapes.values())
        if len(distinct) != 1:
            raise ModalityError(
                f"latents disagree in batch size or grid: {shapes}; all present modalities must "
                "share (B, H, W)"
            )
        batch, height, width = distinct.pop()
        p = self.config.patch_size
        if height % p or width % p:
            raise ModalityError(
                f"latent grid {height}x{width} is not a multiple of the patch size {p}; crop or "
                f"pad the input to a multiple of {8 * p} pixels"
            )
        return batch, height, width


def unpatchify(tokens: torch.Tensor, channels: int, grid: tuple[int, int], p: int) -> torch.Tensor:
    """``(B, h*w, p*p*C)`` with ``(p1, p2, C)`` token layout → ``(B, C, h*p, w*p)``."""
    b = tokens.shape[0]
    h, w = grid
    x = tokens.reshape(b, h, w, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h * p, w * p)


def _as_batch(t: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    if t.ndim == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ModalityError(f"timesteps of shape {tuple(t.shape)} do not fit batch size {batch}")
    return t


def _init_weights(module: nn.Module) -> None:
    """Official init: trunc-normal(0.02) linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_config(
    names: list[str],
    latent_channels: int | Mapping[str, int],
    latent_size: int,
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
) -> None:
    problems = []
    if not names or len(set(names)) != len(names):
        problems.append(f"modalities must be distinct and non-empty, got {names}")
    if isinstance(latent_channels, Mapping) and set(latent_channels) != set(names):
        problems.append(f"latent_channels names {sorted(latent_channels)} differ from {names}")
    if latent_size % patch_size:
        problems.append(f"latent_size {latent_size} is not a multiple of patch_size {patch_size}")
    if depth % 2:
        problems.append(f"depth {depth} must be even (depth/2 in-blocks and out-blocks)")
    if embed_dim % num_heads or embed_dim % 2:
        problems.append(f"embed_dim {embed_dim} must be even and divisible by {num_heads} heads")
    if problems:
        raise ConfigError("invalid backbone config: " + "; ".join(problems))
