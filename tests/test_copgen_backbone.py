"""COP-GEN's backbone against the official fixtures (spec A1, A2, B1, B2, B6 of
``shared/reference/copgen-parity/README.md``), and the strict importer's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geocopgen.copgen import SLOT_NAMES
from geocopgen.copgen.published import (
    COPGEN_SIZES,
    copgen_backbone,
    copgen_config,
    guess_copgen_size,
    import_copgen_weights,
    load_copgen_backbone,
    read_copgen_state_dict,
)
from geocopgen.errors import CheckpointError, ConfigError, ModalityError
from geocopgen.models import MultimodalUViT, load_model, save_model
from geocopgen.models.uvit import timestep_embedding

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
TINY = REF / "backbone_tiny.pth"
CASES = ("all_generated", "mixed_conditioned", "scalar_only_conditioned", "ignored_official")
#: Spec B2: an independent implementation agrees to about 5e-6 (noise floor 8e-7).
ATOL = 5e-6

pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"parity fixtures not at {REF}")


def _tiny_dims() -> dict:
    kwargs = json.loads((REF / "backbone_tiny_config.json").read_text())["constructor_kwargs"]
    return {k: kwargs[k] for k in ("embed_dim", "depth", "num_heads")}


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return load_copgen_backbone(TINY, **_tiny_dims())


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(REF / "backbone_tiny_io.safetensors")


def _inputs(io: dict, case: str) -> tuple[dict, dict]:
    src = f"{case}.in" if case == "ignored_official" else "z"
    latents = {s: io[f"{src}.{s}"] for s in SLOT_NAMES}
    return latents, {s: io[f"{case}.t.{s}"] for s in SLOT_NAMES}


@pytest.mark.parametrize("case", CASES)
def test_tiny_forward_matches_the_official_outputs(tiny, io, case):
    """Same batch of 2 as the fixture; measured here: at most 1.0e-6 (platform ulps)."""
    latents, times = _inputs(io, case)
    with torch.no_grad():
        out = tiny(latents, times).sample
    assert list(out) == list(SLOT_NAMES)
    for s in SLOT_NAMES:
        torch.testing.assert_close(out[s], io[f"{case}.out.{s}"], rtol=0, atol=ATOL)


def test_the_ignored_case_really_feeds_noise_at_time_zero(io):
    """The case-4 inputs are what the official sampler builds: noise for the 7 ignored slots."""
    latents, times = _inputs(io, "ignored_official")
    generated = {"DEM_DEM", "S1RTC_vh_vv"}
    for s in SLOT_NAMES:
        assert bool((times[s] == 450.25).all()) == (s in generated)
        assert torch.equal(latents[s], io[f"z.{s}"]) == (s in generated or s.startswith("S2L2A"))


@pytest.mark.parametrize("dim", [64, 1024])
def test_timestep_embedding_matches_the_official_one(io, dim):
    """Cos first, float t. The fixture's float32 ``exp`` differs from this platform's by one ulp
    in a few frequencies, which moves cos/sin at t = 1000 by up to t * ulp(1) = 6e-5."""
    t = io["aux.timestep_embedding.t"]
    ours, ref = timestep_embedding(t, dim), io[f"aux.timestep_embedding.dim{dim}"]
    torch.testing.assert_close(ours, ref, rtol=0, atol=float(t.max()) * 2**-23 * 1.01)
    half = dim // 2
    assert torch.equal(ours[0], ref[0])  # t = 0: exactly [1...1, 0...0]
    assert torch.equal(ours[:, 0], ref[:, 0]) and torch.equal(ours[:, half], ref[:, half])


def test_timestep_embedding_of_an_odd_width_ends_with_zero():
    emb = timestep_embedding(torch.tensor([3.5]), 7)
    assert emb.shape == (1, 7) and emb[0, -1] == 0
    torch.testing.assert_close(emb[0, 0], torch.cos(torch.tensor(3.5)))


@pytest.mark.parametrize("size", list(COPGEN_SIZES))
def test_published_configs_have_the_official_keys_shapes_and_counts(size):
    ref = json.loads((REF / f"keys_full_{size}.json").read_text())
    with torch.device("meta"):
        bb = copgen_backbone(size)
    ours = {
        k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in bb.state_dict().items()
    }
    assert ours == {k: [shape, dtype] for k, shape, dtype in ref["keys"]}
    assert len(ours) == ref["num_tensors"]
    assert sum(p.numel() for p in bb.parameters()) == ref["num_params"]
    assert list(bb.modality_names) == ref["modality_slot_order"]
    assert {s: bb.geometry[s].n_tokens for s in SLOT_NAMES} == ref["num_patches"]
    assert bb.pos_embed.shape[1] == ref["num_tokens"] == 834


def test_absent_slots_leave_the_sequence(tiny, io):
    """geocopgen's "absent" feature on the COP-GEN layout: a 4-slot call on the 12-slot model
    equals a 4-slot model holding those slots' weights, so the others are truly absent."""
    keep = ["3d_cartesian_lat_lon", "DEM_DEM", "S2L2A_B02_B03_B04_B08", "mean_timestamps"]
    config = {
        k: {n: v[n] for n in keep} if isinstance(v, dict) else v
        for k, v in copgen_config(**_tiny_dims()).items()
    }
    config.update(modalities=keep, scalar_modalities=[keep[0], keep[-1]])
    small = MultimodalUViT(**config).eval()
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith(_PER_SLOT)}
    state["pos_embed"] = tiny.positions(keep)
    for j, name in enumerate(keep):
        i = SLOT_NAMES.index(name)
        for part in ("patch_embeds.{}.proj.weight", "patch_embeds.{}.proj.bias",
                     "decoder_preds.{}.weight", "decoder_preds.{}.bias"):  # fmt: skip
            state[part.format(j)] = tiny.state_dict()[part.format(i)]
    small.load_state_dict(state)
    latents, times = _inputs(io, "mixed_conditioned")
    with torch.no_grad():
        part = tiny({s: latents[s] for s in keep}, {s: times[s] for s in keep}).sample
        alone = small({s: latents[s] for s in keep}, {s: times[s] for s in keep}).sample
    assert list(part) == keep
    for s in keep:
        torch.testing.assert_close(part[s], alone[s], rtol=0, atol=1e-6)
    assert not torch.allclose(part["DEM_DEM"], io["mixed_conditioned.out.DEM_DEM"], atol=1e-3)


_PER_SLOT = ("pos_embed", "patch_embeds.", "decoder_preds.")


def test_scalar_slots_keep_their_fixed_shape(tiny, io):
    with pytest.raises(ModalityError, match=r"'mean_timestamps'.*\(B, 1, 1, 3\)"):
        tiny({"mean_timestamps": torch.zeros(2, 1, 1, 4)}, {"mean_timestamps": 0.0})
    with pytest.raises(ModalityError, match="same ground"):
        tiny(
            {"DEM_DEM": torch.zeros(1, 8, 8, 8), "S1RTC_vh_vv": torch.zeros(1, 8, 8, 8)},
            {"DEM_DEM": 0.0, "S1RTC_vh_vv": 0.0},
        )


# --- refusals -----------------------------------------------------------------------------------
def _tiny_state() -> dict[str, torch.Tensor]:
    return read_copgen_state_dict(TINY)


def _refusal(tmp_path: Path, state: object, name: str = "bad_nnet_ema.pth") -> str:
    path = tmp_path / name
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_copgen_backbone(path, **_tiny_dims())
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_a_missing_key_is_named(tmp_path):
    state = _tiny_state()
    del state["out_blocks.1.skip_linear.bias"]
    assert "1 missing key(s): out_blocks.1.skip_linear.bias" in _refusal(tmp_path, state)


def test_an_extra_key_is_named(tmp_path):
    state = _tiny_state()
    state["time_img_embeds.0.weight"] = torch.zeros(1)
    assert "1 unexpected key(s): time_img_embeds.0.weight" in _refusal(tmp_path, state)


def test_a_wrong_shape_is_named(tmp_path):
    state = _tiny_state()
    state["decoder_preds.11.weight"] = torch.zeros(2, 64)
    msg = _refusal(tmp_path, state)
    assert "decoder_preds.11.weight (checkpoint [2, 64] vs model [1, 64])" in msg


def test_another_published_size_is_recognised():
    """A large checkpoint into a base model says it looks like large (meta: no memory)."""
    with torch.device("meta"):
        large, base = copgen_backbone("large").state_dict(), copgen_backbone("base")
    assert guess_copgen_size(large) == "large"
    with pytest.raises(CheckpointError, match=r"looks like COP-GEN large \(embed_dim 1152, "):
        import_copgen_weights(base, large, source="500000_nnet_ema.pth")


class _NotATensor:
    """Any object whose unpickling needs this module's code."""

    def __init__(self) -> None:
        self.value = 1


def test_a_pickle_that_needs_code_is_refused_without_running_it(tmp_path):
    msg = _refusal(tmp_path, {"pos_embed": _NotATensor()}, "full_object.pth")
    assert "need code" in msg and "_NotATensor" in msg


def test_a_nested_training_checkpoint_and_junk_are_refused(tmp_path):
    msg = _refusal(tmp_path, {"step": 3, "nnet": {"a": torch.zeros(1)}}, "500000.ckpt")
    assert "not a flat state dict" in msg
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: cannot be read as a torch checkpoint"):
        read_copgen_state_dict(junk)
    with pytest.raises(CheckpointError, match=r"absent\.pth: no such file"):
        read_copgen_state_dict(tmp_path / "absent.pth")


def test_a_backbone_in_another_slot_order_is_refused():
    with torch.device("meta"):
        wrong = copgen_backbone(modalities=list(reversed(SLOT_NAMES)))
    with pytest.raises(CheckpointError, match="copgen_backbone"):
        import_copgen_weights(wrong, {})


def test_the_layout_survives_save_and_load(tmp_path):
    """A COP-GEN config (mappings, [H, W] sizes) round-trips through diffusers' config.json."""
    bb = copgen_backbone(embed_dim=16, depth=2, num_heads=2)
    save_model(bb, tmp_path)
    again = load_model(MultimodalUViT, tmp_path)
    assert again.geometry == bb.geometry and again.modality_names == bb.modality_names
    assert torch.equal(again.pos_embed, bb.pos_embed)


def test_inconsistent_layouts_are_config_errors():
    with pytest.raises(ConfigError, match=r"patch_size names \['a'\] differ"):
        MultimodalUViT(modalities=["a", "b"], patch_size={"a": 2})
    with pytest.raises(
        ConfigError, match=r"latent_size \[4, 3\] is not a multiple of patch_size 2"
    ):
        MultimodalUViT(modalities=["a"], latent_size={"a": [4, 3]}, patch_size=2)
    with pytest.raises(ConfigError, match="scalar modality 'v' needs patch_size 1"):
        MultimodalUViT(modalities=["v"], latent_size=[1, 4], patch_size=2, scalar_modalities=["v"])
    with pytest.raises(ConfigError, match=r"scalar_modalities \['w'\] are not modalities"):
        MultimodalUViT(modalities=["v"], scalar_modalities=["w"])
