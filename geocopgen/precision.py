"""Which floating-point precision each part of a translation runs in, per device.

The official COP-GEN samples inside ``torch.autocast(device_type=device)``: float16 on CUDA,
bfloat16 on a CPU, and it encodes and decodes through its VAEs under
``torch.amp.autocast("cuda")``, which is float16 on CUDA and does nothing on a CPU. Its
published quality was made that way, so geocopgen does the same (``precision="auto"``) where the
hardware runs the reduced type natively, and keeps float32 as the exact reference (``"fp32"``)
that the parity tests use.

One :class:`PrecisionPolicy` value says, for one device, what runs in which type:

* **backbone**: under autocast at the policy's dtype (matmuls, attention and the layer norms
  between them in the reduced type, as the official code runs them); its output is cast back to
  float32 before the solver sees it (exact: every bfloat16/float16 value is a float32);
* **VAE encode and decode**: under autocast at the policy's dtype on CUDA, float32 on a CPU (the
  official ``autocast("cuda")`` leaves CPU VAEs in float32; they are called once per chip, the
  backbone 50 times, so their share of the time is small);
* **everything else** (the solver's arithmetic, blending chips, class scores and their argmax,
  the physical post-processing): float32, whatever the precision.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from geocopgen.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a policy is made, not where options are checked
    import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: The autocast dtype of each precision (``None``: float32, no autocast), by ``torch`` attribute.
DTYPES: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
#: CPU flags that mean native bfloat16 arithmetic (x86 AVX512-BF16 or AMX; Arm's BF16 extension).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one geocopgen knows; a one-line :class:`ConfigError` otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (where bfloat16 matmuls beat float32)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: Apple silicon has native bfloat16 from the M2 on, but torch's
        return False  # CPU kernels do not use it, so float32 stays the faster choice there
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return any(flag in flags for flag in CPU_BF16_FLAGS)


@dataclass(frozen=True)
class PrecisionPolicy:
    """What runs in which type for one translation on one device (see the module docstring).

    ``name`` is the precision that runs (never ``"auto"``); ``backbone`` and ``codecs`` are the
    autocast dtypes of the backbone and the VAEs, ``None`` for float32; ``reason`` says why
    ``auto`` chose it.
    """

    name: str
    device: torch.device
    backbone: torch.dtype | None
    codecs: torch.dtype | None
    reason: str = ""

    def _autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
        import torch

        if dtype is None:  # float32: no autocast at all, so fp32 stays bit for bit what it was
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def for_backbone(self) -> contextlib.AbstractContextManager[None]:
        """The context a backbone call runs in."""
        return self._autocast(self.backbone)

    def for_codecs(self) -> contextlib.AbstractContextManager[None]:
        """The context a VAE encode or decode runs in."""
        return self._autocast(self.codecs)

    @property
    def tag(self) -> str:
        """The precision as written into outputs' tags."""
        parts = [f"backbone {_type_name(self.backbone)}", f"VAEs {_type_name(self.codecs)}"]
        return f"{self.name} on {self.device.type} ({', '.join(parts)}, solver float32)"


def resolve_precision(precision: str, device: torch.device | str) -> PrecisionPolicy:
    """The policy ``precision`` means on ``device``.

    ``auto`` is what the official code runs there, where the hardware does it natively: float16
    on CUDA, bfloat16 on a CPU with native bfloat16, float32 elsewhere (a CPU without it would
    emulate bfloat16 more slowly than float32). An explicit precision is honoured as asked;
    float16 on a CPU runs, but slowly (no native float16 matmuls on most CPUs).
    """
    import torch

    device = torch.device(device)
    precision = check_precision(precision)
    reason = ""
    if precision == "auto":
        precision, reason = _auto(device)
    dtype = None if DTYPES[precision] is None else getattr(torch, DTYPES[precision])
    codecs = dtype if device.type == "cuda" else None
    policy = PrecisionPolicy(precision, device, dtype, codecs, reason)
    if reason:
        log.info("precision auto: %s (%s)", policy.tag, reason)
    return policy


def _auto(device: torch.device) -> tuple[str, str]:
    if device.type == "cuda":
        return "fp16", "the official code samples under CUDA float16 autocast"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16", (
            "the official code samples under CPU bfloat16 autocast, and this CPU "
            f"({platform.machine()}) has native bfloat16"
        )
    return "fp32", f"{device.type} has no native reduced-precision arithmetic geocopgen uses"


def _type_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


__all__ = [
    "DTYPES",
    "PRECISIONS",
    "Precision",
    "PrecisionPolicy",
    "check_precision",
    "cpu_has_native_bf16",
    "resolve_precision",
]
