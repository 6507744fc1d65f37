"""The multimodal U-ViT: shapes, absent modalities, position selection, errors, official size."""

from __future__ import annotations

import pytest
import torch
from _models_fixtures import tiny_backbone

from geocopgen.errors import ConfigError, ModalityError, UnknownModalityError
from geocopgen.models import MultimodalUViT
from geocopgen.models.official import OFFICIAL_CONFIG, official_backbone


def _latents(names, batch=2, size=8, channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, channels, size, size, generator=g) for n in names}


@pytest.mark.parametrize(
    "names",
    [("dem",), ("s2l2a", "dem"), ("s1rtc", "s2l1c", "s2l2a"), ("dem", "s1rtc", "s2l1c", "s2l2a")],
)
def test_forward_returns_one_prediction_per_present_modality(names):
    bb = tiny_backbone()
    z = _latents(names)
    out = bb(z, dict.fromkeys(names, 500.0)).sample
    assert set(out) == set(names)
    for n in names:
        assert out[n].shape == z[n].shape
        assert torch.isfinite(out[n]).all()


def test_absent_modalities_are_not_in_the_sequence():
    """A 2-modality call on the 4-modality model equals a 2-modality model with the same weights:
    positions and heads are picked per slot, and the missing tokens are truly absent."""
    full = tiny_backbone()
    pair = tiny_backbone(modalities=("dem", "s2l2a"))
    sd, m, n = full.state_dict(), 4, full.grid_size**2
    slots = {"dem": 0, "s2l2a": 3}
    new = dict(sd)
    pos = sd["pos_embed"][0]
    new["pos_embed"] = torch.cat(
        [pos[[0, 3]], pos[m + 0 * n : m + 1 * n], pos[m + 3 * n : m + 4 * n]]
    ).unsqueeze(0)
    for name, i in slots.items():
        j = 0 if name == "dem" else 1
        for part in ("patch_embeds.{}.proj.weight", "patch_embeds.{}.proj.bias"):
            new[part.format(j)] = sd[part.format(i)]
        for part in ("decoder_preds.{}.weight", "decoder_preds.{}.bias"):
            new[part.format(j)] = sd[part.format(i)]
    new = {k: v for k, v in new.items() if k in pair.state_dict()}
    pair.load_state_dict(new)
    z = _latents(["dem", "s2l2a"])
    t = {"dem": torch.tensor([10.0, 900.0]), "s2l2a": 0.0}
    a, b = full(z, t).sample, pair(z, t).sample
    for name in z:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_aliases_and_key_order_do_not_matter():
    bb = tiny_backbone()
    z = _latents(["s2l2a", "dem"])
    ref = bb(z, {"s2l2a": 0.0, "dem": 300.0}).sample
    alt = bb({"DEM": z["dem"], "l2a": z["s2l2a"]}, {"l2a": 0.0, "DEM": 300.0}).sample
    assert torch.equal(ref["dem"], alt["dem"])


def test_other_latent_grids_run_with_resized_positions():
    bb = tiny_backbone(latent_size=8)
    z = _latents(["dem", "s2l2a"], size=12)
    out = bb(z, {"dem": 10.0, "s2l2a": 0.0}).sample
    assert out["dem"].shape == (2, 4, 12, 12)
    # at the configured size the resize is the identity
    assert torch.equal(bb.positions(["dem"], (4, 4)), bb.positions(["dem"], (4, 4)))


def test_unknown_modality_is_a_named_error():
    bb = tiny_backbone(modalities=("dem", "s2l2a"))
    with pytest.raises(UnknownModalityError, match=r"s1rtc.*built for dem, s2l2a"):
        bb(_latents(["s1rtc"]), {"s1rtc": 0.0})
    with pytest.raises(UnknownModalityError, match="landsat"):
        bb(_latents(["landsat"]), {"landsat": 0.0})


def test_shape_errors_name_the_modality_and_the_expected_shape():
    bb = tiny_backbone()
    with pytest.raises(ModalityError, match=r"'dem' has shape \(2, 3, 8, 8\).*\(B, 4, H, W\)"):
        bb({"dem": torch.zeros(2, 3, 8, 8)}, {"dem": 0.0})
    with pytest.raises(ModalityError, match="disagree"):
        bb(
            {"dem": torch.zeros(2, 4, 8, 8), "s2l2a": torch.zeros(2, 4, 6, 6)},
            {"dem": 0, "s2l2a": 0},
        )
    with pytest.raises(ModalityError, match="multiple of the patch size"):
        bb({"dem": torch.zeros(1, 4, 7, 7)}, {"dem": 0.0})
    with pytest.raises(ModalityError, match="one timestep per present modality"):
        bb({"dem": torch.zeros(1, 4, 8, 8)}, {"s2l2a": 0.0})


def test_bad_configs_are_config_errors():
    with pytest.raises(ConfigError, match="depth 3 must be even"):
        MultimodalUViT(depth=3)
    with pytest.raises(ConfigError, match="not a multiple of patch_size"):
        MultimodalUViT(latent_size=10, patch_size=4)


def test_per_modality_latent_channels():
    bb = tiny_backbone(modalities=("dem", "s2l2a"), latent_channels={"dem": 2, "s2l2a": 6})
    out = bb(
        {"dem": torch.zeros(1, 2, 8, 8), "s2l2a": torch.zeros(1, 6, 8, 8)}, {"dem": 5, "s2l2a": 0}
    ).sample
    assert out["dem"].shape[1] == 2 and out["s2l2a"].shape[1] == 6


def test_gradient_checkpointing_gives_the_same_gradients():
    z = _latents(["dem", "s2l2a"])
    t = {"dem": 100.0, "s2l2a": 0.0}
    grads = []
    for ckpt in (False, True):
        bb = tiny_backbone().train()
        if ckpt:
            bb.enable_gradient_checkpointing()
        bb(z, t).sample["dem"].square().mean().backward()
        grads.append(bb.in_blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_official_architecture_has_the_reference_parameter_count_and_keys():
    """Built on the meta device (no memory): 286,648,384 parameters, the §1.3 key list."""
    with torch.device("meta"):
        bb = official_backbone()
    assert sum(p.numel() for p in bb.parameters()) == 286_648_384
    shapes = {k: tuple(v.shape) for k, v in bb.state_dict().items()}
    assert shapes["pos_embed"] == (1, 1028, 1024)
    assert shapes["patch_embeds.3.proj.weight"] == (1024, 4, 2, 2)
    assert shapes["in_blocks.9.attn.qkv.weight"] == (3072, 1024)
    assert "in_blocks.0.attn.qkv.bias" not in shapes
    assert "in_blocks.0.norm1.weight" not in shapes and "mid_block.skip_linear.weight" not in shapes
    assert shapes["out_blocks.0.skip_linear.weight"] == (1024, 2048)
    assert shapes["decoder_preds.0.weight"] == (16, 1024)
    # pos_embed, 4 patch embeds and 4 heads (w, b), 11 plain blocks, 10 skip blocks, final norm
    assert len(shapes) == 1 + 8 + 8 + 11 * 11 + 10 * 15 + 2
    assert OFFICIAL_CONFIG["depth"] == 20 and len(bb.in_blocks) == len(bb.out_blocks) == 10
