"""Precision: what ``auto`` chooses per device, that fp32 stays the exact reference, that the
reduced precisions run where asked and are recorded, ``batch_size="auto"``, and the cost
announced before a long run."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import geocopgen
from geocopgen import precision as precision_mod
from geocopgen.copgen.model import CopgenModel
from geocopgen.errors import ConfigError
from geocopgen.options import TranslateOptions
from geocopgen.precision import cpu_has_native_bf16, resolve_precision
from geocopgen.translation import cost, device
from geocopgen.weights import DEFAULT_MODEL

REPO = Path(__file__).parents[1]
EXAMPLE = REPO / "examples" / "data" / "terramind" / "S2L2A" / "38D_378R_2_3.tif"
NATIVE_BF16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="no native bfloat16 here")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has (``True``) or lacks (``False``) native bfloat16."""

    def set_to(value: bool) -> None:
        monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: value)

    return set_to


@pytest.mark.parametrize(
    ("device", "native", "expected", "codecs"),
    [
        ("cuda", False, torch.float16, torch.float16),  # the official CUDA autocast
        ("cpu", True, torch.bfloat16, None),  # official CPU autocast; VAEs stay float32
        ("cpu", False, None, None),  # emulated bfloat16 is slower than float32
        ("mps", False, None, None),
    ],
)
def test_auto_follows_the_official_code_where_the_hardware_does_it(
    bf16_cpu, device, native, expected, codecs
):
    bf16_cpu(native)
    policy = resolve_precision("auto", device)
    assert policy.backbone == expected and policy.codecs == codecs
    assert policy.name != "auto" and policy.reason
    assert policy.tag.startswith(f"{policy.name} on {torch.device(device).type}")


def test_explicit_precisions_are_honoured_and_fp32_adds_no_autocast():
    assert resolve_precision("bf16", "cpu").backbone is torch.bfloat16
    assert resolve_precision("fp16", "cuda").codecs is torch.float16
    fp32 = resolve_precision("fp32", "cpu")
    assert isinstance(fp32.for_backbone(), contextlib.nullcontext)
    assert isinstance(fp32.for_codecs(), contextlib.nullcontext)
    with resolve_precision("bf16", "cpu").for_backbone():
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype is torch.bfloat16


@pytest.mark.parametrize("bad", [{"precision": "half"}, {"batch_size": 0}, {"batch_size": "x"}])
def test_bad_precision_and_batch_size_are_config_errors(bad):
    with pytest.raises(ConfigError, match=r"precision|batch_size"):
        TranslateOptions(**bad)


def test_auto_batch_size_fills_half_the_free_memory_within_bounds(monkeypatch):
    backbone = CopgenModel.read(DEFAULT_MODEL).backbone
    per_chip = device.activation_bytes(backbone)
    monkeypatch.setattr(device, "free_memory", lambda _d: 10 * per_chip)
    assert device.auto_batch_size(backbone, torch.device("cpu")) == 5
    monkeypatch.setattr(device, "free_memory", lambda _d: per_chip // 10)
    assert device.auto_batch_size(backbone, torch.device("cpu")) == 1
    monkeypatch.setattr(device, "free_memory", lambda _d: 10**15)
    assert device.auto_batch_size(backbone, torch.device("cpu")) == device.MAX_AUTO_BATCH["cpu"]
    options, policy = device.resolve_device_options(
        TranslateOptions(batch_size="auto", precision="fp32"), backbone
    )
    assert options.batch_size == device.MAX_AUTO_BATCH["cpu"] and policy.name == "fp32"


def _translate(tmp_path, name: str, **options) -> rasterio.DatasetReader:
    out = tmp_path / f"{name}.tif"
    geocopgen.translate(EXAMPLE, "dem", output=out, steps=2, progress=False, **options)
    return rasterio.open(out)


def test_bundled_model_in_fp32_and_bf16_same_grid_close_values_recorded(tmp_path):
    """The bundled model in both precisions: the grid is the same to the bit, the DEM within a
    few centimetres (measured 0.034 m at 50 calls), and the tag says what ran."""
    with _translate(tmp_path, "fp32", precision="fp32") as a, _translate(
        tmp_path, "bf16", precision="bf16"
    ) as b:
        assert (a.crs, a.transform, a.shape, a.count) == (b.crs, b.transform, b.shape, b.count)
        assert a.nodata == b.nodata or (np.isnan(a.nodata) and np.isnan(b.nodata))
        x, y = a.read(1), b.read(1)
        assert np.array_equal(np.isnan(x), np.isnan(y))
        diff = np.nanmax(np.abs(x - y))
        assert 0 < diff < 0.5, diff
        assert a.tags()["PRECISION"].startswith("fp32 on cpu (backbone float32")
        assert b.tags()["PRECISION"].startswith("bf16 on cpu (backbone bfloat16, VAEs float32")


def test_fp32_is_deterministic_to_the_bit(tmp_path):
    with _translate(tmp_path, "a", precision="fp32") as a, _translate(
        tmp_path, "b", precision="fp32", batch_size=3
    ) as b:
        # a different batch composition is allowed to move the last bits; the same one is not
        again = _translate(tmp_path, "c", precision="fp32")
        assert np.array_equal(a.read(), again.read(), equal_nan=True)
        assert np.nanmax(np.abs(a.read() - b.read())) < 1e-3


@NATIVE_BF16
def test_auto_on_this_cpu_is_bf16_and_says_so_at_v(tmp_path, caplog):
    caplog.set_level("INFO", logger="geocopgen")
    with _translate(tmp_path, "auto") as out:
        assert out.tags()["PRECISION"].startswith("bf16 on cpu")
    assert any("precision auto: bf16 on cpu" in r.getMessage() for r in caplog.records)


def test_cost_is_announced_before_a_long_run_and_silenced_without_progress(
    tmp_path, monkeypatch, capsys
):
    """Issue 27 row 15: a large run says its size before the first read, and its time once a
    batch has been denoised."""
    monkeypatch.setattr(cost, "ANNOUNCE_ABOVE_S", 0.0)
    monkeypatch.setattr(cost, "ANNOUNCE_ABOVE_EVALUATIONS", 0)
    out = tmp_path / "dem.tif"
    geocopgen.translate(EXAMPLE, "dem", output=out, steps=2, precision="fp32")
    err = capsys.readouterr().err
    size = "geocopgen: translating 4 chips x 2 model calls in batches of 8 on cpu in fp32"
    time_ = "geocopgen: denoising 4 chips x 2 calls in batches of 8 on cpu in fp32: about"
    assert size in err and time_ in err and err.index(size) < err.index("encoding")
    geocopgen.translate(EXAMPLE, "dem", output=out, steps=2, precision="fp32", progress=False,
                        overwrite=True)  # fmt: skip
    assert "denoising" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "text"), [(40.2, "40 s"), (600, "10 min"), (3 * 3600 + 5 * 60, "3 h 05 min")]
)
def test_durations_read_as_a_person_reads_them(seconds, text):
    assert cost.duration(seconds) == text
