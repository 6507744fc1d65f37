"""The published COP-GEN VAEs (``model-50-ema.pth``) as diffusers ``AutoencoderKL`` models.

Each COP-GEN image slot has its own LDM KL-f8 autoencoder (spec A4), stored as a flat state dict
with ``encoder.``/``decoder.``/``quant_conv.``/``post_quant_conv.`` keys (spec A5). The key
renaming and the 1×1-conv → linear reshape of the mid-block attention are diffusers' own
(:func:`diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint`). What diffusers does not
do, and this module adds:

* the diffusers config is **inferred from the tensor shapes** (channels, ``ch·ch_mult``, blocks per
  level, latent width), because these checkpoints come without an LDM YAML and are not 3-channel;
* every key is **accounted for**: the LDM keys a VAE of that shape must have are listed, and a
  missing or extra key is a :class:`~geocopgen.errors.CheckpointError` naming it (diffusers'
  converter silently ignores both);
* a VAE whose channels do not match the slot it is converted for (**the wrong group**) is refused;
* the official latent arithmetic (spec A4): ``z = sf·mean`` by default (deterministic; the
  official ``encode`` samples, see :func:`encode`), decode multiplies by ``float32(1/sf)``.

LDM's Downsample (zero pad right/bottom, 3×3 stride-2 conv) is diffusers' ``Downsample2D`` with
``padding=0``; GroupNorm uses 32 groups and eps 1e-6 on both sides. The mid-block attention runs
through ``scaled_dot_product_attention`` in diffusers and through explicit ``bmm``/softmax in LDM,
which differ at the 1e-7 level (see ``tests/test_copgen_vae.py`` for the measured figures).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

from geocopgen.copgen.layout import CopgenSlot, slot
from geocopgen.errors import CheckpointError
from geocopgen.models.checkpoints import compare_state_dict

#: LDM GroupNorm groups; not recoverable from weights, and 32 in every LDM/COP-GEN config.
NORM_NUM_GROUPS = 32

#: The official posterior clamp on log-variance before ``exp(0.5·logvar)``.
LOGVAR_RANGE = (-30.0, 20.0)

_RESNET_PARTS = ("norm1", "conv1", "norm2", "conv2")
_ATTN_PARTS = ("norm", "q", "k", "v", "proj_out")


def _wb(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias"]


def _resnet_keys(prefix: str, shortcut: bool) -> list[str]:
    keys = [k for part in _RESNET_PARTS for k in _wb(f"{prefix}.{part}")]
    return keys + (_wb(f"{prefix}.nin_shortcut") if shortcut else [])


def _mid_keys(side: str) -> list[str]:
    keys = _resnet_keys(f"{side}.mid.block_1", False)
    keys += [k for part in _ATTN_PARTS for k in _wb(f"{side}.mid.attn_1.{part}")]
    return keys + _resnet_keys(f"{side}.mid.block_2", False)


def expected_ldm_keys(config: Mapping[str, Any]) -> list[str]:
    """Every key an LDM KL autoencoder with this diffusers ``config`` has (no attention levels).

    It is the check the diffusers converter lacks: comparing a checkpoint's keys against this
    list names each missing and each extra key.
    """
    channels = list(config["block_out_channels"])
    per_level = int(config["layers_per_block"])
    keys = _wb("encoder.conv_in")
    previous = channels[0]
    for i, width in enumerate(channels):
        for j in range(per_level):
            keys += _resnet_keys(f"encoder.down.{i}.block.{j}", j == 0 and previous != width)
        previous = width
        if i < len(channels) - 1:
            keys += _wb(f"encoder.down.{i}.downsample.conv")
    keys += _mid_keys("encoder") + _wb("encoder.norm_out") + _wb("encoder.conv_out")
    keys += _wb("decoder.conv_in") + _mid_keys("decoder")
    previous = channels[-1]
    for i in reversed(range(len(channels))):
        for j in range(per_level + 1):
            shortcut = j == 0 and previous != channels[i]
            keys += _resnet_keys(f"decoder.up.{i}.block.{j}", shortcut)
        previous = channels[i]
        if i > 0:
            keys += _wb(f"decoder.up.{i}.upsample.conv")
    keys += _wb("decoder.norm_out") + _wb("decoder.conv_out")
    return keys + _wb("quant_conv") + _wb("post_quant_conv")


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(
            f"{source}: missing key {key}, which an LDM KL autoencoder needs (is this a "
            "COP-GEN model-50-ema.pth VAE state dict?)"
        )
    return tuple(state_dict[key].shape)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
    return sorted(found)


def vae_config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str = "VAE state dict"
) -> dict[str, Any]:
    """The diffusers ``AutoencoderKL`` config of an LDM KL state dict, read from tensor shapes.

    ``in_channels`` from ``encoder.conv_in``, ``block_out_channels`` (= ch·ch_mult) from the first
    conv of each encoder level, ``layers_per_block`` (= num_res_blocks) from the blocks of level 0,
    ``latent_channels`` (= z_channels = embed_dim) from ``post_quant_conv``, ``out_channels`` from
    ``decoder.conv_out``. No scaling factor: that belongs to the slot, see :func:`convert_vae`.
    """
    in_channels = _shape(state_dict, "encoder.conv_in.weight", source)[1]
    levels = _indices(state_dict, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"{source}: encoder levels {levels} are not 0..n-1")
    widths = [
        _shape(state_dict, f"encoder.down.{i}.block.0.conv1.weight", source)[0] for i in levels
    ]
    per_level = len(_indices(state_dict, r"encoder\.down\.0\.block\.(\d+)\."))
    latent, z_in = _shape(state_dict, "post_quant_conv.weight", source)[:2]
    if latent != z_in:
        raise CheckpointError(
            f"{source}: embed_dim {latent} differs from z_channels {z_in}; diffusers' "
            "AutoencoderKL needs them equal"
        )
    return {
        "in_channels": in_channels,
        "out_channels": _shape(state_dict, "decoder.conv_out.weight", source)[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(widths),
        "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths,
        "layers_per_block": per_level,
        "latent_channels": latent,
        "norm_num_groups": NORM_NUM_GROUPS,
    }


def _listed(label: str, keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")
    return f"{len(keys)} {label} key(s): {shown}" if keys else ""


def _check_keys(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], source: str
) -> None:
    expected = expected_ldm_keys(config)
    missing = [k for k in expected if k not in state_dict]
    known = set(expected)
    extra = [k for k in state_dict if k not in known]
    if missing or extra:
        parts = [
            _listed(label, keys) for label, keys in (("missing", missing), ("unexpected", extra))
        ]
        raise CheckpointError(
            f"{source}: not a complete LDM KL autoencoder: {'; '.join(p for p in parts if p)}"
        )


def _check_group(config: Mapping[str, Any], target: CopgenSlot, source: str) -> None:
    want = target.image_channels
    got = (config["in_channels"], config["out_channels"])
    if got != (want, want):
        raise CheckpointError(
            f"{source}: a VAE with {got[0]} input and {got[1]} output channels cannot be the "
            f"{target.key} VAE, which takes {want} ({', '.join(target.bands)}); pass the "
            "model-50-ema.pth of that group"
        )


def convert_ldm_vae_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str = "VAE state dict"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An LDM KL state dict → (diffusers config, diffusers state dict), every key accounted for.

    Works on meta tensors too (shapes only), which is how the published key listings are checked.
    """
    config = vae_config_from_state_dict(state_dict, source=source)
    _check_keys(state_dict, config, source)
    converted = convert_ldm_vae_checkpoint(dict(state_dict), config)
    return config, converted


def build_vae(
    config: Mapping[str, Any], *, device: torch.device | str | None = None
) -> AutoencoderKL:
    """An (uninitialised) ``AutoencoderKL`` for ``config``; ``device="meta"`` allocates nothing."""
    with torch.device(device or "cpu"):
        return AutoencoderKL(**config)


def convert_vae(
    state_dict: Mapping[str, torch.Tensor], slot_key: str, *, source: str = "VAE state dict"
) -> AutoencoderKL:
    """The COP-GEN VAE of ``slot_key`` as a diffusers ``AutoencoderKL`` in eval mode.

    ``config.scaling_factor`` is the slot's official ``scale_factor``; ``config.sample_size`` its
    chip size. Refuses (one :class:`CheckpointError` line each) missing or extra keys (LDM
    names), mis-shaped tensors (diffusers names) and a VAE of another group (channels that do not
    match the slot; the 4-channel groups, S2 10 m L1C/L2A and the cloud mask, share one shape).
    """
    target = slot(slot_key)
    if target.kind != "image":
        raise CheckpointError(f"{source}: slot {slot_key} is a scalar slot and has no VAE")
    config, converted = convert_ldm_vae_state_dict(state_dict, source=source)
    _check_group(config, target, source)
    config = {**config, "sample_size": target.chip_px, "scaling_factor": target.scale_factor}
    vae = build_vae(config)
    report = compare_state_dict(vae, converted)
    if not report.ok:
        raise CheckpointError(f"{source}: the weights do not fit: {report.describe()}")
    vae.load_state_dict(converted, strict=True)
    return vae.eval().requires_grad_(False)


def read_vae_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``model-50-ema.pth`` safely: ``weights_only=True``, a flat mapping of tensors.

    A pickle that needs code, a nested training checkpoint (``model-50.pt``) or anything else
    that is not ``str → Tensor`` is a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a COP-GEN model-50-ema.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for code, RuntimeError/EOFError for damage
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path}: not a tensors-only torch checkpoint ({type(err).__name__}: {first}); "
            "geocopgen never unpickles code"
        ) from None
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__} that is not a flat state dict of tensors "
            "(a training checkpoint? extract model-50-ema.pth first)"
        )
    return dict(obj)


def load_vae(path: str | os.PathLike, slot_key: str) -> AutoencoderKL:
    """Read and convert one published VAE file for ``slot_key`` (see :func:`convert_vae`)."""
    return convert_vae(read_vae_state_dict(path), slot_key, source=str(path))


# --- the official latent arithmetic ---------------------------------------------------------
def encode_moments(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """The raw posterior moments (B, 2·latent, h, w): mean first, then unclamped log-variance."""
    return vae.encode(x).latent_dist.parameters


def sample_posterior(
    moments: torch.Tensor,
    scale_factor: float,
    *,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """The official posterior sample ``sf·(mean + exp(0.5·clamp(logvar, -30, 20))·ε)``.

    ``ε`` is ``eps`` when given, otherwise drawn with ``generator`` (the global generator when
    ``None``, as ``randn_like`` does in the official code: same stream, same values).
    """
    mean, logvar = torch.chunk(moments, 2, dim=1)
    std = torch.exp(0.5 * torch.clamp(logvar, *LOGVAR_RANGE))
    if eps is None:
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return scale_factor * (mean + std * eps)


def posterior_mode(moments: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """The deterministic latent ``sf·mean``."""
    mean, _ = torch.chunk(moments, 2, dim=1)
    return scale_factor * mean


def encode(
    vae: AutoencoderKL,
    x: torch.Tensor,
    *,
    sample: bool = False,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised pixels (B, C, S, S) → backbone latent (B, 8, S/8, S/8), scaled by the slot's sf.

    Deterministic (``sf·mean``) by default, so a conditioning latent does not depend on a random
    state; ``sample=True`` is the official ``FrozenAutoencoderKL.encode`` (spec C3).
    """
    moments = encode_moments(vae, x)
    scale = float(vae.config.scaling_factor)
    if sample or eps is not None:
        return sample_posterior(moments, scale, generator=generator, eps=eps)
    return posterior_mode(moments, scale)


def decode(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """Backbone latent → normalised pixels: ``decoder(post_quant_conv(float32(1/sf)·z))``.

    Multiplying by ``1/sf`` rather than dividing by ``sf`` is the official arithmetic; the two
    differ in the last bit.
    """
    return vae.decode((1.0 / float(vae.config.scaling_factor)) * z).sample


def convert_vae_file(
    path: str | os.PathLike, slot_key: str, folder: str | os.PathLike
) -> AutoencoderKL:
    """Convert a published ``model-50-ema.pth`` once into a diffusers folder (safetensors + JSON).

    The folder loads back with ``AutoencoderKL.from_pretrained(folder)``; its config carries the
    slot's scale factor, so :func:`encode`/:func:`decode` need nothing else.
    """
    vae = load_vae(path, slot_key)
    vae.save_pretrained(str(folder), safe_serialization=True)
    return vae
