"""The multimodal U-ViT denoiser: one token sequence over the modalities that are present.

The layout follows the official COP-GEN-Beta ``Triffuser`` and the COP-GEN ``COPGEN`` network
(UniDiffuser's post-LayerNorm U-ViT) so that their weights map one to one, parameter name for
parameter name:

* one patch embedding (``patch_embeds.{i}.proj``, a strided ``Conv2d``) and one output head
  (``decoder_preds.{i}``, a ``Linear`` to ``p*p*C`` values laid out as ``(p1, p2, C)``) per
  modality, index ``i`` = the modality's slot in ``config.modalities``;
* one timestep token per modality: the raw sinusoidal embedding (cos first, then sin) of the
  float timestep on the 0..1000 scale, 0 meaning "clean";
* a learned position embedding ``pos_embed`` of shape ``(1, M + sum(N_i), D)``: M time-token
  slots first, then one block of N_i patch positions (row-major) per modality, in slot order;
* ``depth/2`` in-blocks, one mid-block and ``depth/2`` out-blocks with long skips popped LIFO and
  fused by ``skip_linear(cat([x, skip]))``; post-LayerNorm blocks; a final shared ``norm``.

Each modality has its own latent shape ``(C, H, W)`` and patch size (``latent_channels``,
``latent_size`` and ``patch_size`` are one value for all or a mapping name → value), so
COP-GEN-Beta (four 4x32x32 latents), geocopgen's bundled model and COP-GEN (ten image latents
of four sizes plus two 3-vectors) are the same code. A *scalar* modality (``scalar_modalities``)
is a fixed ``(1, 1, K)`` vector with patch size 1: ``Conv2d(1, D, 1)`` gives one token per
component and its head ``Linear(D, 1)`` one value per token, exactly the image path at p = 1;
being a vector, it is never resized.

What geocopgen adds: a modality may be **absent**. ``forward`` takes only the modalities that are
present (dicts name → latent and name → timestep) and gathers their time-token and patch-position
embeddings from ``pos_embed`` by slot, so an S2L2A→DEM call carries two modalities' tokens, not
four. Image latents other than the configured size are accepted if every present image modality
is scaled by the same factor (they cover the same ground): each one's position block is resized
bicubically (an extrapolation the model was not trained on; results are best at the configured
size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from geocopgen.errors import ConfigError, ModalityError, UnknownModalityError
from geocopgen.modalities import OFFICIAL_ORDER, get_modality

#: A latent side, or ``(H, W)``.
SizeLike = int | Sequence[int]


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal embedding ``cat([cos(t f), sin(t f)])`` with ``f_i = max_period^(-i/half)``.

    Cos comes first, as in the official models; ``timesteps`` are floats on the 0..1000 scale
    (fractions are kept: COP-GEN's sampler calls the network at non-integer times). An odd
    ``dim`` gets a trailing zero.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


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


@dataclass(frozen=True)
class SlotGeometry:
    """Where one modality sits in the sequence: its latent channels, configured patch grid
    ``(rows, cols)``, patch size, and whether it is a fixed-size scalar vector."""

    channels: int
    grid: tuple[int, int]
    patch_size: int
    scalar: bool = False

    @property
    def n_tokens(self) -> int:
        """Patch tokens at the configured size."""
        return self.grid[0] * self.grid[1]

    @property
    def latent_hw(self) -> tuple[int, int]:
        """Configured latent height and width."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size


class MultimodalUViT(ModelMixin, ConfigMixin):
    """U-ViT over per-modality latents with per-modality timesteps (see the module docstring).

    ``depth`` counts in- plus out-blocks (as in U-ViT; the mid-block comes on top), so the
    official model is ``depth=20``. ``latent_channels``, ``latent_size`` (a side, or ``[H, W]``)
    and ``patch_size`` are one value for every modality or a mapping name → value;
    ``scalar_modalities`` names the fixed-size vector slots (see the module docstring).
    Modality names the registry knows are stored canonically; others (model-specific slots such
    as COP-GEN's ``DEM_DEM``) are kept as given.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        modalities: Sequence[str] = OFFICIAL_ORDER,
        latent_channels: int | Mapping[str, int] = 8,
        latent_size: SizeLike | Mapping[str, SizeLike] = 32,
        patch_size: int | Mapping[str, int] = 4,
        embed_dim: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        scalar_modalities: Sequence[str] = (),
    ) -> None:
        super().__init__()
        names = [_slot_name(m) for m in modalities]
        scalars = {_slot_name(m) for m in scalar_modalities}
        _check_config(
            names, scalars, latent_channels, latent_size, patch_size, embed_dim, depth, num_heads
        )
        self.modality_names: tuple[str, ...] = tuple(names)
        self._slot = {name: i for i, name in enumerate(names)}
        self.geometry: dict[str, SlotGeometry] = {
            n: _geometry(n, latent_channels, latent_size, patch_size, n in scalars) for n in names
        }
        counts = [g.n_tokens for g in self.geometry.values()]
        self._pos_start = dict(zip(names, accumulate([len(names), *counts[:-1]]), strict=True))
        self.gradient_checkpointing = False

        self.patch_embeds = nn.ModuleList(
            PatchEmbed(g.channels, embed_dim, g.patch_size) for g in self.geometry.values()
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, len(names) + sum(counts), embed_dim))
        self.in_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth // 2)
        )
        self.mid_block = Block(embed_dim, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, skip=True) for _ in range(depth // 2)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_preds = nn.ModuleList(
            nn.Linear(embed_dim, g.patch_size**2 * g.channels) for g in self.geometry.values()
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    # --- facts about the configuration -----------------------------------------------------
    def channels_of(self, name: str) -> int:
        """Latent channels of modality ``name``."""
        return self.geometry[self.canonical(name)].channels

    def latent_shape_of(self, name: str) -> tuple[int, int, int]:
        """Configured latent ``(C, H, W)`` of modality ``name``."""
        geo = self.geometry[self.canonical(name)]
        return (geo.channels, *geo.latent_hw)

    @property
    def grid_size(self) -> int:
        """Patch grid side at the configured latent size, for models with one square grid."""
        grids = {g.grid for g in self.geometry.values()}
        rows, cols = next(iter(grids))
        if len(grids) != 1 or rows != cols:
            raise ConfigError(
                f"modalities have different or non-square patch grids ({sorted(grids)}); "
                "read geometry[name].grid instead"
            )
        return rows

    def canonical(self, name: str) -> str:
        """The slot name of ``name`` (a slot name, or a registry name or alias); raise if the
        model lacks it."""
        if name in self._slot:
            return name
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
        ``timesteps``: name → a float or a ``(B,)`` tensor on the 0..1000 scale (0 = clean;
        fractions are used as they are, never rounded).
        """
        latents = {self.canonical(k): v for k, v in latents.items()}
        timesteps = {self.canonical(k): v for k, v in timesteps.items()}
        names = self.present(latents)
        if set(timesteps) != set(names):
            raise ModalityError(
                f"timesteps are given for {sorted(timesteps)} but latents for {names}; "
                "give one timestep per present modality"
            )
        batch, grids = self._check_shapes(latents)

        time_tokens = [
            timestep_embedding(_as_batch(timesteps[n], batch, latents[n]), self.config.embed_dim)
            .to(latents[n].dtype)
            .unsqueeze(1)
            for n in names
        ]
        patch_tokens = [self.patch_embeds[self._slot[n]](latents[n]) for n in names]
        x = torch.cat(time_tokens + patch_tokens, dim=1) + self.positions(names, grids)

        skips = []
        for blk in self.in_blocks:
            x = self._run(blk, x)
            skips.append(x)
        x = self._run(self.mid_block, x)
        for blk in self.out_blocks:
            x = self._run(blk, x, skips.pop())
        x = self.norm(x)

        out, start = {}, len(names)
        for name in names:
            geo, n_tok = self.geometry[name], grids[name][0] * grids[name][1]
            tokens = self.decoder_preds[self._slot[name]](x[:, start : start + n_tok])
            out[name] = unpatchify(tokens, geo.channels, grids[name], geo.patch_size)
            start += n_tok
        return BackboneOutput(sample=out) if return_dict else (out,)

    def positions(
        self,
        names: Sequence[str],
        grid: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Position embeddings for the sequence ``[t_names..., patches_names...]``.

        ``grid``: the patch grid of every modality (one ``(rows, cols)`` for all, or a mapping
        name → grid); ``None`` means the configured grids. Other grids resize the slot's block.
        """
        pos, d = self.pos_embed[0], self.config.embed_dim
        time_rows = [pos[self._slot[n]] for n in names]
        blocks = []
        for n in names:
            geo, start = self.geometry[n], self._pos_start[n]
            block = pos[start : start + geo.n_tokens]
            want = geo.grid if grid is None else grid[n] if isinstance(grid, Mapping) else grid
            if tuple(want) != geo.grid:
                block = (
                    F.interpolate(
                        block.T.reshape(1, d, *geo.grid),
                        size=tuple(want),
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

    def _check_shapes(
        self, latents: Mapping[str, torch.Tensor]
    ) -> tuple[int, dict[str, tuple[int, int]]]:
        """Batch size and each modality's patch grid; raise on what the model cannot take."""
        for name, z in latents.items():
            geo = self.geometry[name]
            want = (geo.channels, *geo.latent_hw) if geo.scalar else (geo.channels, "H", "W")
            resized_vector = geo.scalar and tuple(z.shape[2:]) != geo.latent_hw
            if z.ndim != 4 or z.shape[1] != geo.channels or resized_vector:
                raise ModalityError(
                    f"latent of {name!r} has shape {tuple(z.shape)}; the model expects "
                    f"(B, {', '.join(map(str, want))})"
                )
        batches = {n: z.shape[0] for n, z in latents.items()}
        if len(set(batches.values())) != 1:
            raise ModalityError(f"latents disagree in batch size: {batches}")
        sizes = {n: tuple(z.shape[2:]) for n, z in latents.items()}
        for name, (height, width) in sizes.items():
            p = self.geometry[name].patch_size
            if height % p or width % p:
                raise ModalityError(
                    f"latent grid {height}x{width} of {name!r} is not a multiple of the patch "
                    f"size {p}; crop or pad the input to a multiple of {8 * p} pixels"
                )
        _check_common_scale(self.geometry, sizes)
        grids = {
            n: (h // self.geometry[n].patch_size, w // self.geometry[n].patch_size)
            for n, (h, w) in sizes.items()
        }
        return next(iter(batches.values())), grids


def _check_common_scale(
    geometry: Mapping[str, SlotGeometry], sizes: Mapping[str, tuple[int, int]]
) -> None:
    """Image latents must be their configured sizes scaled by one factor (the same ground)."""
    scales = {
        n: (Fraction(h, geometry[n].latent_hw[0]), Fraction(w, geometry[n].latent_hw[1]))
        for n, (h, w) in sizes.items()
        if not geometry[n].scalar
    }
    if len(set(scales.values())) > 1:
        configured = {n: geometry[n].latent_hw for n in scales}
        raise ModalityError(
            f"latents disagree in grid: {dict(sizes)}; every present modality must cover the "
            f"same ground, i.e. have its configured size {configured} scaled by one factor"
        )


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


def _slot_name(name: str) -> str:
    """The registry name of a known modality; any other name (a model-specific slot) as given."""
    try:
        return get_modality(name).name
    except UnknownModalityError:
        return str(name)


def _per_modality(value: object, name: str) -> object:
    return value[name] if isinstance(value, Mapping) else value


def _hw(size: SizeLike) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _geometry(
    name: str,
    latent_channels: int | Mapping[str, int],
    latent_size: SizeLike | Mapping[str, SizeLike],
    patch_size: int | Mapping[str, int],
    scalar: bool,
) -> SlotGeometry:
    p = int(_per_modality(patch_size, name))
    height, width = _hw(_per_modality(latent_size, name))
    return SlotGeometry(
        int(_per_modality(latent_channels, name)), (height // p, width // p), p, scalar
    )


def _check_config(
    names: list[str],
    scalars: set[str],
    latent_channels: int | Mapping[str, int],
    latent_size: SizeLike | Mapping[str, SizeLike],
    patch_size: int | Mapping[str, int],
    embed_dim: int,
    depth: int,
    num_heads: int,
) -> None:
    problems = []
    if not names or len(set(names)) != len(names):
        problems.append(f"modalities must be distinct and non-empty, got {names}")
    per_modality = {
        "latent_channels": latent_channels,
        "latent_size": latent_size,
        "patch_size": patch_size,
    }
    for label, value in per_modality.items():
        if isinstance(value, Mapping) and set(value) != set(names):
            problems.append(f"{label} names {sorted(value)} differ from {names}")
    if scalars - set(names):
        problems.append(f"scalar_modalities {sorted(scalars - set(names))} are not modalities")
    if not problems:
        for name in names:
            size, p = _per_modality(latent_size, name), _per_modality(patch_size, name)
            if any(side % p for side in _hw(size)):
                problems.append(f"latent_size {size} is not a multiple of patch_size {p}")
            if name in scalars and p != 1:
                problems.append(f"scalar modality {name!r} needs patch_size 1, got {p}")
    if depth % 2:
        problems.append(f"depth {depth} must be even (depth/2 in-blocks and out-blocks)")
    if embed_dim % num_heads or embed_dim % 2:
        problems.append(f"embed_dim {embed_dim} must be even and divisible by {num_heads} heads")
    if problems:
        raise ConfigError("invalid backbone config: " + "; ".join(dict.fromkeys(problems)))
