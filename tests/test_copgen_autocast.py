"""COP-GEN in mixed precision against the official code run under its own CPU autocast
(``tests/data/copgen_autocast``: the official modules at 453f829, unchanged, with
``torch.autocast(device_type="cpu")``, bfloat16, left active; see that folder's README).

geocopgen with ``precision="bf16"`` reproduces them **bit for bit** on a CPU with AMX-BF16 (the
kind that made them): the backbone's bfloat16 outputs in all four forward cases, and the final
latents of the official ``_sample_batch`` over 50 model calls in all three directions. oneDNN's
bfloat16 kernels round differently on other CPUs (measured: up to 0.016 on backbone outputs and
0.26 on 5-step finals with AVX512 or AVX2 kernels, the official code against itself), so there the
comparison is within those tolerances. The fp32 path, run on the same inputs, differs from them
by the size of the autocast rounding, which shows the comparison can tell the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from geocopgen.copgen.published import load_copgen_backbone
from geocopgen.copgen.sampler import COPGEN_SAMPLER, copgen_sample
from geocopgen.precision import resolve_precision

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
HERE = Path(__file__).parent / "data" / "copgen_autocast"
BACKBONE = HERE / "backbone_tiny_autocast_io.safetensors"
SAMPLER = HERE / "sampler_tiny_autocast_io.safetensors"
CASES = ["all_generated", "mixed_conditioned", "scalar_only_conditioned", "ignored_official"]


def _has_amx_bf16() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "amx_bf16" in cpuinfo.read_text()


#: Where the fixtures were made: oneDNN's AMX bfloat16 kernels, so equality is expected.
SAME_KERNELS = _has_amx_bf16()


def assert_reproduces(ours: torch.Tensor, official: torch.Tensor, atol: float) -> None:
    """Bit for bit on the fixtures' kind of CPU; within ``atol`` elsewhere."""
    assert ours.dtype == official.dtype
    if SAME_KERNELS:
        assert torch.equal(ours, official)
    else:
        torch.testing.assert_close(ours.float(), official.float(), rtol=0, atol=atol)

pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"parity fixtures not at {REF}")


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return load_copgen_backbone(REF / "backbone_tiny.pth", embed_dim=64, depth=4, num_heads=2)


@pytest.fixture(scope="module")
def sampler_io() -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(SAMPLER, "pt") as f:
        meta = json.loads(f.metadata()["json"])
    return load_file(SAMPLER), meta


def _forward(tiny, case: str, precision: str) -> dict[str, torch.Tensor]:
    """Our backbone on the fp32 fixture's inputs and times of ``case``."""
    io = load_file(REF / "backbone_tiny_io.safetensors")
    names = tiny.modality_names
    inputs = {n: io.get(f"{case}.in.{n}", io[f"z.{n}"]) for n in names}
    times = {n: io[f"{case}.t.{n}"] for n in names}
    with torch.no_grad(), resolve_precision(precision, "cpu").for_backbone():
        return tiny(inputs, times).sample


@pytest.mark.parametrize("case", CASES)
def test_backbone_in_bf16_equals_the_official_autocast_forward(tiny, case):
    official = load_file(BACKBONE)
    ours = _forward(tiny, case, "bf16")
    for name, out in ours.items():
        expected = official[f"{case}.out.{name}"]
        assert expected.dtype == torch.bfloat16
        assert_reproduces(out, expected, atol=0.03)


def test_fp32_is_told_apart_from_autocast(tiny):
    """The control: the reference path differs from the autocast outputs by bf16 rounding
    (0.013 at most on outputs of |max| 1.8, as the fixture's metadata records)."""
    official = load_file(BACKBONE)
    ours = _forward(tiny, "all_generated", "fp32")
    worst = max(
        float((out - official[f"all_generated.out.{n}"].float()).abs().max())
        for n, out in ours.items()
    )
    assert 1e-3 < worst < 0.05


@pytest.mark.parametrize(
    "case", ["cond_S2L2A_gen_DEM_S1RTC", "cond_S2L2A_gen_rest", "unconditional_all"]
)
def test_the_published_sampler_in_bf16_equals_the_official_autocast_run(tiny, sampler_io, case):
    """50 model calls, the official RNG protocol, bfloat16 backbone, float32 solver."""
    io, meta = sampler_io
    spec = meta["cases"][case]
    generator = torch.Generator().manual_seed(spec["torch_manual_seed"])
    conditions = {s: io[f"cond.{s}"] for s in spec["condition"]}
    latents = copgen_sample(
        tiny, spec["generate"], conditions, generator=generator, precision="bf16"
    ).latents
    for slot in spec["generate"]:
        expected = io[f"{case}.final.{slot}"]
        assert_reproduces(latents[slot], expected, atol=0.01 * float(expected.abs().max()))


def test_a_short_run_in_both_precisions(tiny, sampler_io):
    """Five calls (orders [3, 2]) from the official seed: fp32 against the official fp32, bf16
    against the official autocast (within the fp32 fixtures' tolerance, spec B4)."""
    io, meta = sampler_io
    spec = meta["short5"]
    preset = COPGEN_SAMPLER.__class__(steps=5)
    conditions = {s: io[f"short5.cond.{s}"] for s in spec["condition"]}
    for precision, label, tolerance in (("bf16", "autocast", 0.01), ("fp32", "fp32", 1e-5)):
        latents = copgen_sample(
            tiny, spec["generate"], conditions, preset=preset,
            generator=torch.Generator().manual_seed(spec["torch_manual_seed"]),
            precision=precision,
        ).latents  # fmt: skip
        for slot in spec["generate"]:
            expected = io[f"short5.{label}.final.{slot}"]
            scale = float(expected.abs().max())
            atol = (1e-5 if SAME_KERNELS else tolerance) * scale
            torch.testing.assert_close(latents[slot], expected, rtol=0, atol=atol)
