"""Parity of geocopgen's COP-GEN VAEs (diffusers ``AutoencoderKL``) with the official ones.

Fixtures: ``shared/reference/copgen-parity`` (spec B3, B6). Measured here (torch 2.13 CPU) against
the official outputs, max abs difference:

============================  =========  =========  =========  ===========  ==========
slot                          moments    z_mode     z_sample   decoded(zs)  decoded(zm)
============================  =========  =========  =========  ===========  ==========
DEM_DEM                       1.8e-6     7.1e-7     1.1e-6     6.7e-6       7.2e-6
S1RTC_vh_vv                   2.5e-6     1.6e-6     1.8e-6     6.7e-6
S2L2A_B02_B03_B04_B08         2.4e-6     2.0e-6     2.1e-6     7.3e-6
============================  =========  =========  =========  ===========  ==========

The differences are float32 rounding in ~30 stacked convolutions and GroupNorms (diffusers' SDPA
attention instead of LDM's bmm/softmax changes nothing measurable: the same figures with
diffusers' plain ``AttnProcessor``). Tolerances are about 4x the measured figures: ``ATOL_LATENT``
for moments and latents (|value| <= 1.4), ``ATOL_PIXELS`` for decoded pixels (|value| <= 4.1).
A real mistake is far above them: GroupNorm eps 1e-5 instead of 1e-6 moves the moments by
5e-3..2e-2 and the decoded pixels by 2e-4..3e-4 (asserted below). The latent arithmetic itself
(sf·mean, the posterior sample, float32(1/sf)) is checked to the bit on the stored moments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm
from safetensors.torch import load_file

from geocopgen.copgen.layout import slot
from geocopgen.copgen.vae import (
    build_vae,
    convert_ldm_vae_state_dict,
    convert_vae,
    convert_vae_file,
    decode,
    encode,
    encode_moments,
    expected_ldm_keys,
    load_vae,
    posterior_mode,
    read_vae_state_dict,
    sample_posterior,
)
from geocopgen.errors import CheckpointError
from geocopgen.models.checkpoints import compare_state_dict

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
TINY = ("DEM_DEM", "S1RTC_vh_vv", "S2L2A_B02_B03_B04_B08")
ATOL_LATENT = 1e-5
ATOL_PIXELS = 3e-5
ONE_ULP_AT_4 = 4.8e-7  # float32 spacing just above 4: |z| <= 4 here


def _maxabs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(REF / "vae_tiny_io.safetensors")


@pytest.fixture(scope="module")
def cases() -> dict:
    from safetensors import safe_open

    with safe_open(REF / "vae_tiny_io.safetensors", "pt") as f:
        return json.loads(f.metadata()["json"])["cases"]


@pytest.fixture(scope="module")
def vaes() -> dict[str, AutoencoderKL]:
    return {key: load_vae(REF / f"vae_tiny_{key}.pth", key) for key in TINY}


@pytest.fixture(scope="module")
def outputs(vaes, io) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    with torch.no_grad():
        for key, vae in vaes.items():
            x = io[f"{key}.x"]
            moments = encode_moments(vae, x)
            z_sample = encode(vae, x, eps=io[f"{key}.eps"])
            out[key] = {
                "moments": moments,
                "z_mode": encode(vae, x),
                "z_sample": z_sample,
                "decoded_z_sample": decode(vae, io[f"{key}.z_sample"]),
            }
        out["DEM_DEM"]["decoded_z_mode"] = decode(vaes["DEM_DEM"], io["DEM_DEM.z_mode"])
    return out


@pytest.mark.parametrize("key", TINY)
def test_config_is_read_from_the_shapes(vaes, cases, key):
    config, dd = vaes[key].config, cases[key]["ddconfig"]
    assert config.in_channels == config.out_channels == dd["in_channels"] == dd["out_ch"]
    assert list(config.block_out_channels) == [dd["ch"] * m for m in dd["ch_mult"]]
    assert config.layers_per_block == dd["num_res_blocks"]
    assert config.latent_channels == dd["z_channels"] == cases[key]["embed_dim"]
    assert config.scaling_factor == cases[key]["scale_factor"] == slot(key).scale_factor


@pytest.mark.parametrize("key", TINY)
@pytest.mark.parametrize(
    ("field", "atol"),
    [
        ("moments", ATOL_LATENT),
        ("z_mode", ATOL_LATENT),
        ("z_sample", ATOL_LATENT),
        ("decoded_z_sample", ATOL_PIXELS),
    ],
)
def test_matches_the_official_vae(outputs, io, key, field, atol):
    assert _maxabs(outputs[key][field], io[f"{key}.{field}"]) <= atol


def test_dem_decodes_the_posterior_mode_like_the_official_vae(outputs, io):
    decoded = outputs["DEM_DEM"]["decoded_z_mode"]
    assert _maxabs(decoded, io["DEM_DEM.decoded_z_mode"]) <= ATOL_PIXELS


@pytest.mark.parametrize("key", TINY)
def test_latent_arithmetic_is_the_official_one_on_the_stored_moments(io, key):
    moments, sf = io[f"{key}.moments"], io[f"{key}.scale_factor"].item()
    assert torch.equal(posterior_mode(moments, sf), io[f"{key}.z_mode"])
    # exp() on this CPU differs from the fixture machine's in 1 ulp on ~1 % of the elements
    z = sample_posterior(moments, sf, eps=io[f"{key}.eps"])
    assert _maxabs(z, io[f"{key}.z_sample"]) <= ONE_ULP_AT_4


def test_posterior_noise_comes_from_the_generator_like_randn_like(vaes, io, cases):
    vae, x = vaes["DEM_DEM"], io["DEM_DEM.x"]
    with torch.no_grad():
        seeded = encode(vae, x, sample=True, generator=torch.Generator().manual_seed(5276))
        torch.manual_seed(cases["DEM_DEM"]["encode_seed"])
        global_rng = encode(vae, x, sample=True)
        given = encode(vae, x, eps=io["DEM_DEM.eps"])
    assert torch.equal(seeded, given) and torch.equal(global_rng, given)


def test_decode_multiplies_by_float32_of_one_over_sf(vaes, io):
    vae, z = vaes["DEM_DEM"], io["DEM_DEM.z_sample"]
    seen = []
    handle = vae.post_quant_conv.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            decode(vae, z)
    finally:
        handle.remove()
    sf = slot("DEM_DEM").scale_factor
    assert torch.equal(seen[0], z * torch.tensor(1.0 / sf, dtype=torch.float32))
    assert not torch.equal(seen[0], z / sf)  # the last bit differs


def test_the_tolerance_catches_a_wrong_groupnorm_eps(io):
    vae = load_vae(REF / "vae_tiny_DEM_DEM.pth", "DEM_DEM")
    for module in vae.modules():
        if isinstance(module, torch.nn.GroupNorm):
            module.eps = 1e-5
    with torch.no_grad():
        moments = encode_moments(vae, io["DEM_DEM.x"])
    assert _maxabs(moments, io["DEM_DEM.moments"]) > 100 * ATOL_LATENT


def test_diffusers_downsample_is_ldms_pad_then_stride_2_conv(vaes):
    down = vaes["DEM_DEM"].encoder.down_blocks[0].downsamplers[0]
    x = torch.randn(1, 32, 9, 10, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (0, 1, 0, 1))  # LDM: right and bottom only
    ldm = F.conv2d(padded, down.conv.weight, down.conv.bias, stride=2)
    with torch.no_grad():
        assert torch.equal(down(x), ldm)


def test_mid_attention_is_ldms_single_head_attention(vaes):
    """LDM's AttnBlock written out on the original 1x1-conv weights vs diffusers' converted one."""
    ldm = read_vae_state_dict(REF / "vae_tiny_DEM_DEM.pth")
    p = {
        k.removeprefix("encoder.mid.attn_1."): v
        for k, v in ldm.items()
        if k.startswith("encoder.mid.attn_1.")
    }
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(1))
    h = F.group_norm(x, 32, p["norm.weight"], p["norm.bias"], eps=1e-6)
    q, k, v = [F.conv2d(h, p[f"{n}.weight"], p[f"{n}.bias"]).flatten(2) for n in "qkv"]
    weights = torch.softmax(q.transpose(1, 2) @ k * 32**-0.5, dim=2)
    out = (v @ weights.transpose(1, 2)).reshape(1, 32, 8, 8)
    expected = x + F.conv2d(out, p["proj_out.weight"], p["proj_out.bias"])
    with torch.no_grad():
        got = vaes["DEM_DEM"].encoder.mid_block.attentions[0](x)
    assert _maxabs(got, expected) <= 1e-6  # measured 2.4e-7 (|x| <= 3.9): SDPA vs bmm/softmax


# --- the published VAEs: every key of every listing converts ---------------------------------
KEY_LISTINGS = sorted(REF.glob("keys_vae_*.json"))


def test_there_are_ten_published_listings():
    assert len(KEY_LISTINGS) == 10


@pytest.mark.parametrize("listing", KEY_LISTINGS, ids=lambda p: p.stem.removeprefix("keys_vae_"))
def test_published_vae_converts_completely(listing):
    info = json.loads(listing.read_text())
    meta = {k: torch.empty(shape, device="meta") for k, shape, _ in info["keys"]}
    config, converted = convert_ldm_vae_state_dict(meta, source=listing.name)
    assert set(expected_ldm_keys(config)) == set(meta)
    dd, target = info["ddconfig"], slot(info["modality"])
    assert config["in_channels"] == config["out_channels"] == target.image_channels == dd["out_ch"]
    widths = [dd["ch"] * m for m in dd["ch_mult"]]
    assert config["block_out_channels"] == widths == [128, 256, 512, 512]
    assert config["layers_per_block"] == dd["num_res_blocks"]
    assert config["latent_channels"] == dd["z_channels"] == info["embed_dim"]
    vae = build_vae(config, device="meta")
    assert compare_state_dict(vae, converted).ok
    assert len(converted) == info["num_tensors"] == 248
    assert sum(p.numel() for p in vae.parameters()) == info["num_params"]
    assert info["scale_factor"] == target.scale_factor
    # diffusers' own helper, given the official ddconfig, agrees with the shape-inferred config
    ldm = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": dd}}}}}
    theirs = create_vae_diffusers_config_from_ldm(ldm, meta)
    assert {k: theirs[k] for k in config if k in theirs} == {
        k: v for k, v in config.items() if k != "norm_num_groups"
    }


# --- refusals: one CheckpointError line each -------------------------------------------------
@pytest.fixture(scope="module")
def dem_state() -> dict[str, torch.Tensor]:
    return read_vae_state_dict(REF / "vae_tiny_DEM_DEM.pth")


def _refused(state: dict, key: str, *needles: str) -> None:
    with pytest.raises(CheckpointError) as err:
        convert_vae(state, key, source="x.pth")
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_a_missing_key_is_named(dem_state):
    state = {k: v for k, v in dem_state.items() if k != "decoder.mid.attn_1.q.bias"}
    _refused(state, "DEM_DEM", "missing", "decoder.mid.attn_1.q.bias")


def test_an_extra_key_is_named(dem_state):
    state = {**dem_state, "loss.logvar": torch.zeros(())}
    _refused(state, "DEM_DEM", "unexpected", "loss.logvar")


def test_a_misshaped_tensor_is_named(dem_state):
    state = {**dem_state, "decoder.conv_in.bias": torch.zeros(7)}
    _refused(state, "DEM_DEM", "decoder.conv_in.bias")


def test_a_vae_of_another_group_is_refused():
    s1 = read_vae_state_dict(REF / "vae_tiny_S1RTC_vh_vv.pth")
    _refused(s1, "S2L2A_B02_B03_B04_B08", "2 input", "S2L2A_B02_B03_B04_B08", "takes 4")


def test_a_scalar_slot_has_no_vae(dem_state):
    _refused(dem_state, "mean_timestamps", "scalar")


class _Payload:
    """Anything a tensors-only unpickler must not build."""


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "model-50-ema.pth"
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "hook": _Payload()}, path)
    with pytest.raises(CheckpointError, match="tensors-only") as err:
        read_vae_state_dict(path)
    assert "\n" not in str(err.value)


def test_a_training_checkpoint_is_refused(tmp_path, dem_state):
    path = tmp_path / "model-50.pt"
    torch.save({"step": torch.tensor(50), "ema": {"ema_model.x": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="not a flat state dict"):
        read_vae_state_dict(path)


def test_converted_folder_loads_back_with_diffusers(tmp_path, io):
    vae = convert_vae_file(REF / "vae_tiny_DEM_DEM.pth", "DEM_DEM", tmp_path / "vae")
    again = AutoencoderKL.from_pretrained(tmp_path / "vae")
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert again.config.scaling_factor == slot("DEM_DEM").scale_factor
    with torch.no_grad():
        assert torch.equal(decode(again, io["DEM_DEM.z_mode"]), decode(vae, io["DEM_DEM.z_mode"]))
