"""How a translation uses its device, decided once when it is planned: the precision policy and
the batch size (``batch_size="auto"``: the largest batch the device's free memory holds).

The batch estimate is arithmetic on the backbone's config, not a trial run: a trial that fails
for lack of memory on a CPU is the kernel's OOM killer, not an exception to catch. It counts
one chip-sample's activations at the widest point of a forward pass (the long-skip stack, one
block's attention and MLP, with attention scores materialised as the unfused kernel does) at
4 bytes an element, whatever the precision, and fills half of the free memory with them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from geocopgen.models.uvit import MultimodalUViT
from geocopgen.options import TranslateOptions
from geocopgen.precision import PrecisionPolicy, resolve_precision

log = logging.getLogger(__name__)

#: The share of free memory ``batch_size="auto"`` fills with activations.
MEMORY_SHARE = 0.5
#: Upper bounds of ``batch_size="auto"``: beyond these a larger batch is no faster (a CPU's
#: matmuls are saturated at a few chips; a GPU's at a few hundred).
MAX_AUTO_BATCH = {"cpu": 32, "cuda": 512}


def device_of(module: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on."""
    return next(module.parameters()).device


def resolve_device_options(
    options: TranslateOptions, backbone: MultimodalUViT
) -> tuple[TranslateOptions, PrecisionPolicy]:
    """``options`` with a numeric batch size, and the precision policy, for ``backbone``'s
    device."""
    device = device_of(backbone)
    policy = resolve_precision(options.precision, device)
    if options.batch_size == "auto":
        batch = auto_batch_size(backbone, device)
        log.info("batch size auto on %s: %d chip-samples per backbone call", device, batch)
        options = dataclasses.replace(options, batch_size=batch)
    return options, policy


def activation_bytes(backbone: MultimodalUViT) -> int:
    """Bytes one chip-sample's activations take at the widest point of a forward pass."""
    config = backbone.config
    tokens = sum(g.n_tokens for g in backbone.geometry.values()) + len(backbone.geometry)
    width = int(config.embed_dim)
    heads = int(config.num_heads)
    hidden = int(width * float(config.mlp_ratio))
    skips = (int(config.depth) // 2 + 1) * tokens * width
    block = tokens * (4 * width + hidden) + heads * tokens * tokens
    return 4 * (skips + block)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now (a CPU: ``MemAvailable``)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3  # nothing says: assume a small machine


def auto_batch_size(backbone: MultimodalUViT, device: torch.device) -> int:
    """The largest batch whose activations fill :data:`MEMORY_SHARE` of the free memory."""
    fits = int(free_memory(device) * MEMORY_SHARE // activation_bytes(backbone))
    return max(1, min(fits, MAX_AUTO_BATCH.get(device.type, MAX_AUTO_BATCH["cpu"])))


__all__ = [
    "MAX_AUTO_BATCH",
    "MEMORY_SHARE",
    "activation_bytes",
    "auto_batch_size",
    "device_of",
    "free_memory",
    "resolve_device_options",
]
