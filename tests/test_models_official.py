"""Official-weight import: key names and shapes, a spec-level forward check, the sampler preset.

The reference for every expectation here is ``reference/copgen-beta-and-major-tom.md`` §1.2-1.3
and "What a faithful re-implementation must match"; the spec forward below is written from that
text with plain torch ops on the state-dict tensors, without calling geocopgen's modules.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geocopgen.errors import CheckpointError
from geocopgen.models import CopGenPipeline
from geocopgen.models.official import (
    import_official_weights,
    load_official_backbone,
    official_backbone,
    read_official_state_dict,
)
from geocopgen.models.schedule import official_scheduler

# A reduced-width official model: embed 64, depth 4 (2 in, mid, 2 out), 4 heads.
D, DEPTH, HEADS, P, C, M, LATENT = 64, 4, 4, 2, 4, 4, 8
REDUCED = dict(embed_dim=D, depth=DEPTH, num_heads=HEADS, latent_size=LATENT)
N = (LATENT // P) ** 2


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official key names and shapes (§1.3), at reduced width."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    sd = {"pos_embed": r(1, M + M * N, D, scale=0.5)}
    for i in range(M):
        sd[f"patch_embeds.{i}.proj.weight"] = r(D, C, P, P, scale=0.3)
        sd[f"patch_embeds.{i}.proj.bias"] = r(D)

    def block(prefix: str, skip: bool) -> None:
        if skip:
            sd[f"{prefix}.norm1.weight"] = 1 + r(D)
            sd[f"{prefix}.norm1.bias"] = r(D)
            sd[f"{prefix}.skip_linear.weight"] = r(D, 2 * D, scale=0.1)
            sd[f"{prefix}.skip_linear.bias"] = r(D)
        for norm in ("norm2", "norm3"):
            sd[f"{prefix}.{norm}.weight"] = 1 + r(D)
            sd[f"{prefix}.{norm}.bias"] = r(D)
        sd[f"{prefix}.attn.qkv.weight"] = r(3 * D, D, scale=0.2)
        sd[f"{prefix}.attn.proj.weight"] = r(D, D, scale=0.1)
        sd[f"{prefix}.attn.proj.bias"] = r(D)
        sd[f"{prefix}.mlp.fc1.weight"] = r(4 * D, D, scale=0.1)
        sd[f"{prefix}.mlp.fc1.bias"] = r(4 * D)
        sd[f"{prefix}.mlp.fc2.weight"] = r(D, 4 * D, scale=0.05)
        sd[f"{prefix}.mlp.fc2.bias"] = r(D)

    for k in range(DEPTH // 2):
        block(f"in_blocks.{k}", skip=False)
    block("mid_block", skip=False)
    for k in range(DEPTH // 2):
        block(f"out_blocks.{k}", skip=True)
    sd["norm.weight"] = 1 + r(D)
    sd["norm.bias"] = r(D)
    for i in range(M):
        sd[f"decoder_preds.{i}.weight"] = r(P * P * C, D, scale=0.2)
        sd[f"decoder_preds.{i}.bias"] = r(P * P * C)
    return sd


def spec_forward(sd, imgs: list[torch.Tensor], ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official forward, step by step from the reference text."""

    def ln(x, name):
        return F.layer_norm(x, (D,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)

    def lin(x, name, bias=True):
        return x @ sd[f"{name}.weight"].T + (sd[f"{name}.bias"] if bias else 0)

    def attn(x, pre):
        b, length, _ = x.shape
        qkv = lin(x, f"{pre}.attn.qkv", bias=False).reshape(b, length, 3, HEADS, D // HEADS)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # 'B L (K H D) -> K B H L D'
        w = torch.softmax(q @ k.transpose(-1, -2) * (D // HEADS) ** -0.5, dim=-1)
        return lin((w @ v).transpose(1, 2).reshape(b, length, D), f"{pre}.attn.proj")

    def mlp(x, pre):
        h = lin(x, f"{pre}.mlp.fc1")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
        return lin(h, f"{pre}.mlp.fc2")

    def block(x, pre, skip=None):  # post-LN
        if skip is not None:
            x = ln(lin(torch.cat([x, skip], -1), f"{pre}.skip_linear"), f"{pre}.norm1")
        x = ln(x + attn(x, pre), f"{pre}.norm2")
        return ln(x + mlp(x, pre), f"{pre}.norm3")

    half = D // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    time_tokens = []
    for t in ts:
        args = t[:, None].float() * freqs
        time_tokens.append(torch.cat([torch.cos(args), torch.sin(args)], -1)[:, None])  # cos first
    patches = [
        F.conv2d(
            imgs[i],
            sd[f"patch_embeds.{i}.proj.weight"],
            sd[f"patch_embeds.{i}.proj.bias"],
            stride=P,
        )
        .flatten(2)
        .transpose(1, 2)
        for i in range(M)
    ]
    x = torch.cat(time_tokens + patches, 1) + sd["pos_embed"]
    skips = []
    for k in range(DEPTH // 2):
        x = block(x, f"in_blocks.{k}")
        skips.append(x)
    x = block(x, "mid_block")
    for k in range(DEPTH // 2):
        x = block(x, f"out_blocks.{k}", skips.pop())  # LIFO
    x = ln(x, "norm")
    outs, h = [], LATENT // P
    for i in range(M):
        tok = lin(x[:, M + i * N : M + (i + 1) * N], f"decoder_preds.{i}")
        # 'B (h w) (p1 p2 C) -> B C (h p1) (w p2)'
        outs.append(tok.reshape(-1, h, h, P, P, C).permute(0, 5, 1, 3, 2, 4).reshape(-1, C, 8, 8))
    return outs


def test_official_key_list_loads_with_nothing_missing_or_unexpected():
    bb = official_backbone(**REDUCED)
    report = import_official_weights(bb, official_state_dict())
    assert report.ok, report.describe()
    assert report.missing == report.unexpected == report.mismatched == []


def test_loaded_forward_matches_the_spec_level_official_forward():
    sd = official_state_dict()
    bb = official_backbone(**REDUCED)
    import_official_weights(bb, sd)
    g = torch.Generator().manual_seed(1)
    imgs = [torch.randn(2, C, LATENT, LATENT, generator=g) for _ in range(M)]
    ts = [
        torch.tensor([0.0, 0.0]),
        torch.tensor([1.0, 1000.0]),
        torch.tensor([417.5, 3.0]),
        torch.tensor([999.0, 0.0]),
    ]
    names = ("dem", "s1rtc", "s2l1c", "s2l2a")  # the official index order
    with torch.no_grad():
        ours = bb(dict(zip(names, imgs, strict=True)), dict(zip(names, ts, strict=True))).sample
        spec = spec_forward(sd, imgs, ts)
    for i, name in enumerate(names):
        torch.testing.assert_close(ours[name], spec[i], rtol=1e-4, atol=1e-5)


def test_pth_file_reads_with_weights_only_and_strips_a_ddp_prefix(tmp_path):
    sd = official_state_dict()
    path = tmp_path / "nnet_ema_114000.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    bb = load_official_backbone(path, **REDUCED)
    assert torch.equal(bb.pos_embed, sd["pos_embed"])


def test_misfitting_checkpoints_name_every_bad_key(tmp_path):
    sd = official_state_dict()
    del sd["out_blocks.1.skip_linear.bias"]
    sd["extra.weight"] = torch.zeros(3)
    sd["norm.weight"] = torch.ones(D + 1)
    with pytest.raises(CheckpointError) as err:
        import_official_weights(official_backbone(**REDUCED), sd, source="nnet_ema.pth")
    msg = str(err.value)
    assert "nnet_ema.pth" in msg
    assert "1 missing key(s): out_blocks.1.skip_linear.bias" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "norm.weight (checkpoint [65] vs model [64])" in msg
    report = import_official_weights(official_backbone(**REDUCED), sd, strict=False)
    assert not report.ok and report.missing == ["out_blocks.1.skip_linear.bias"]


def test_wrong_model_order_and_non_state_dicts_are_checkpoint_errors(tmp_path):
    from geocopgen.models import MultimodalUViT

    wrong = MultimodalUViT(
        modalities=("s2l2a", "dem", "s1rtc", "s2l1c"),
        latent_channels=4,
        latent_size=LATENT,
        patch_size=2,
        embed_dim=D,
        depth=DEPTH,
        num_heads=HEADS,
    )
    with pytest.raises(CheckpointError, match="official_backbone"):
        import_official_weights(wrong, official_state_dict())
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        read_official_state_dict(garbage)
    nested = tmp_path / "nested.pth"
    torch.save({"step": 3, "nnet": {"a": torch.zeros(1)}}, nested)
    with pytest.raises(CheckpointError, match="not a flat state dict"):
        read_official_state_dict(nested)
    with pytest.raises(CheckpointError, match="download the official weights"):
        read_official_state_dict(tmp_path / "absent.pth")


def test_official_scheduler_preset_matches_the_official_grid():
    sch = official_scheduler()
    sch.set_timesteps(50)
    # official: orders [3]*16 + [2] = 50 model calls; diffusers groups them as [1,2,3]*16 + [1,2]
    assert sch.order_list == [1, 2, 3] * 16 + [1, 2]
    # official t grid linspace(1, 1e-3, 51) ↔ diffusers index t*1000 - 1, rounded
    official_grid = torch.linspace(1.0, 1e-3, 51) * 1000 - 1
    assert torch.equal(sch.timesteps, official_grid[:-1].round().long())
    # the last step ends at index 0 (official t = 1e-3), not at clean data
    alpha0 = sch.alphas_cumprod[0]
    assert float(sch.sigmas[-1]) == pytest.approx(float(((1 - alpha0) / alpha0) ** 0.5))
    assert sch.config.algorithm_type == "dpmsolver++" and sch.config.solver_order == 3


def test_converted_official_pipeline_round_trips(tmp_path):
    from geocopgen.models.official import official_pipeline

    path = tmp_path / "nnet_ema_114000.pth"
    torch.save(official_state_dict(), path)
    pipe = official_pipeline(path, **REDUCED)
    pipe.save_pretrained(tmp_path / "converted")
    again = CopGenPipeline.from_pretrained(tmp_path / "converted")
    assert again.ignored == "noise" and again.num_inference_steps == 50
    assert type(again.scheduler).__name__ == "DPMSolverSinglestepScheduler"
    for k, v in pipe.backbone.state_dict().items():
        assert torch.equal(v, again.backbone.state_dict()[k]), k
