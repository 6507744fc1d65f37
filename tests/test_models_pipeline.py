"""``CopGenPipeline`` on real tiles: encode → sample → decode, save → load identity, bad folders."""

from __future__ import annotations

import json

import pytest
import torch
from _models_fixtures import read_tile, tiny_autoencoder, tiny_backbone

from geocopgen.errors import CheckpointError, ModalityError
from geocopgen.models import CopGenPipeline, fit_scaling_factor, generators_from_seeds

PLACES = ("38D_378R_2_3", "637U_59R_1_3")


@pytest.fixture(scope="module")
def tiles() -> dict[str, torch.Tensor]:
    return {m: torch.cat([read_tile(m, p) for p in PLACES]) for m in ("s2l2a", "dem")}


@pytest.fixture(scope="module")
def pipe(tiles) -> CopGenPipeline:
    codecs = {m: tiny_autoencoder(m, seed=i) for i, m in enumerate(tiles)}
    for m, codec in codecs.items():
        fit_scaling_factor(codec, [tiles[m]])
    return CopGenPipeline(tiny_backbone(), autoencoders=codecs, num_inference_steps=5)


def test_s2l2a_to_dem_images_in_model_units(pipe, tiles):
    out = pipe(
        ["dem"], {"s2l2a": tiles["s2l2a"]}, generator=generators_from_seeds([1, 2]), progress=False
    )
    assert set(out.images) == {"dem"}
    assert out.images["dem"].shape == tiles["dem"].shape
    assert set(out.latents) == {"dem", "s2l2a"}
    latent = pipe(["dem"], {"s2l2a": tiles["s2l2a"]}, output_type="latent", progress=False)
    assert latent.images == {}


def test_save_then_load_gives_identical_outputs(pipe, tiles, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "model")
    config = json.loads((folder / "pipeline.json").read_text())
    assert config["autoencoders"] == {"s2l2a": "ModalityAutoencoder", "dem": "ModalityAutoencoder"}
    assert (folder / "backbone" / "diffusion_pytorch_model.safetensors").is_file()
    again = CopGenPipeline.from_pretrained(folder)
    assert (
        again.autoencoders["dem"].config.scaling_factor
        == pipe.autoencoders["dem"].config.scaling_factor
    )

    def run(p):
        gen = torch.Generator().manual_seed(4)
        cond = {"s2l2a": tiles["s2l2a"]}
        return p(
            ["dem", "s1rtc"],
            cond,
            num_samples=2,
            generator=gen,
            output_type="latent",
            progress=False,
        )

    for codec in pipe.autoencoders.values():  # loading switches codecs to this layout
        codec.for_inference()
    a, b = run(pipe), run(again)
    for name in a.latents:
        assert torch.equal(a.latents[name], b.latents[name]), name
    # saving again over the folder replaces it in one move and leaves no temporary folders
    pipe.save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_float16_storage_halves_the_folder_and_loads_in_float32(pipe, tmp_path):
    full = pipe.save_pretrained(tmp_path / "full")
    half = pipe.save_pretrained(tmp_path / "half", dtype=torch.float16)

    def size(folder):
        return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))

    assert size(half) < 0.55 * size(full)
    assert json.loads((half / "pipeline.json").read_text())["weights_dtype"] == "float16"
    loaded = CopGenPipeline.from_pretrained(half)
    for name, param in loaded.backbone.named_parameters():
        assert param.dtype == torch.float32, name
        original = dict(pipe.backbone.named_parameters())[name].detach()
        assert torch.equal(param.detach(), original.half().float()), name
    assert all(p.dtype == torch.float32 for p in pipe.backbone.parameters())  # left as it was


def test_reimagine_and_loop_through_images(pipe, tiles):
    out = pipe(
        ["dem"],
        {"s2l2a": tiles["s2l2a"]},
        init={"dem": tiles["dem"]},
        strength=0.0,
        output_type="latent",
        progress=False,
    )
    with torch.no_grad():
        assert torch.equal(out.latents["dem"], pipe.autoencoders["dem"].to_latents(tiles["dem"]))
    looped = pipe.loop(
        {"s2l2a": tiles["s2l2a"]}, [(["s2l2a"], ["dem"]), (["dem"], ["s2l2a"])], progress=False
    )
    assert set(looped.images) == {"dem", "s2l2a"}


def test_missing_codec_and_bad_folders_are_named_errors(pipe, tiles, tmp_path):
    with pytest.raises(ModalityError, match="no autoencoder for 's1rtc'"):
        pipe(["dem"], {"s1rtc": torch.zeros(2, 2, 64, 64)}, progress=False)
    with pytest.raises(CheckpointError, match="no such folder, and not a hub repo id"):
        CopGenPipeline.from_pretrained(tmp_path / "nowhere" / "deeper")
    (tmp_path / "file.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file"):
        CopGenPipeline.from_pretrained(tmp_path / "file.safetensors")
    with pytest.raises(CheckpointError, match=r"pipeline\.json: missing"):
        CopGenPipeline.from_pretrained(tmp_path)
    folder = pipe.save_pretrained(tmp_path / "m")
    weights = folder / "backbone" / "diffusion_pytorch_model.safetensors"
    torch.save(pipe.backbone.state_dict(), weights)  # a pickle under a safetensors name
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        CopGenPipeline.from_pretrained(folder)


def test_checkpoint_from_another_config_lists_the_misfits(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "m")
    cfg_path = folder / "backbone" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["depth"] = 4
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"26 missing key\(s\): in_blocks\.1\.attn\.qkv\.weight"
    ):
        CopGenPipeline.from_pretrained(folder)


def test_the_pipeline_samples_in_the_precision_asked_and_stays_close(pipe, tiles):
    """A 4-modality pipeline (COP-GEN-Beta's kind) follows ``precision`` like COP-GEN models:
    the backbone sees bfloat16 autocast in ``bf16``, none in ``fp32``; outputs are float32 and
    close to each other."""
    seen = []
    hook = pipe.backbone.register_forward_hook(
        lambda _m, _i, out: seen.append(out.sample["dem"].dtype)
    )

    def run(precision):
        gen = generators_from_seeds([1, 2])
        return pipe(["dem"], {"s2l2a": tiles["s2l2a"]}, generator=gen, progress=False,
                    precision=precision).images["dem"]  # fmt: skip

    try:
        fp32, bf16 = run("fp32"), run("bf16")
    finally:
        hook.remove()
    assert set(seen[:5]) == {torch.float32} and set(seen[5:]) == {torch.bfloat16}
    assert fp32.dtype == bf16.dtype == torch.float32
    assert 0 < float((fp32 - bf16).abs().max()) < 0.1


def test_a_folder_made_by_the_previous_release_loads_and_translates_as_it_did():
    """Issue 24: a model folder written by an earlier geocopgen (tests/data/previous_release)
    still loads, as the class its ``pipeline.json`` names, and translates a real tile as that
    release did (to float32 kernel rounding: millimetres, from the thread count)."""
    from pathlib import Path

    import numpy as np
    from conftest import terramind

    from geocopgen import api

    folder = Path(__file__).parent / "data" / "previous_release"
    model = api.load_model(folder / "tiny_4modality", device="cpu")
    assert isinstance(model, CopGenPipeline)
    dem = api.translate(terramind("S2L2A"), "dem", model=model, steps=2, precision="fp32",
                        progress=False)  # fmt: skip
    then = np.load(folder / "tiny_4modality_s2l2a_to_dem.npz")["dem"]
    np.testing.assert_allclose(dem.values, then, atol=0.01, rtol=1e-5)  # mm: thread order
