"""The COP-GEN model folder and its converter, on the tiny parity fixtures (spec A4, A5, B1-B3 of
``shared/reference/copgen-parity/README.md``): conversion through Python and the CLI, reload
parity (bit for bit with the directly imported modules), every refusal, and the hub path with the
download functions replaced by local files (no network)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import geocopgen
from geocopgen.cli import app
from geocopgen.copgen import SLOT_NAMES
from geocopgen.copgen.convert import (
    OFFICIAL_VAE_NAMES,
    backbone_dims,
    convert_copgen,
    convert_copgen_from_hub,
    file_sha256,
    find_vae_files,
    load_copgen,
    load_official_from_hub,
    read_backbone_config,
    slot_of_vae_file,
)
from geocopgen.copgen.model import HUB_BACKBONE_REPO, CopgenModel, is_copgen_model
from geocopgen.copgen.published import COPGEN_SIZES, copgen_backbone, load_copgen_backbone
from geocopgen.copgen.sampler import COPGEN_SAMPLER
from geocopgen.copgen.vae import decode, encode, encode_moments, load_vae
from geocopgen.errors import CheckpointError, ConfigError, ModalityError, OutputError

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
BACKBONE = REF / "backbone_tiny.pth"
CONFIG = REF / "backbone_tiny_config.json"
TINY_VAES = ("DEM_DEM", "S1RTC_vh_vv", "S2L2A_B02_B03_B04_B08")
CASES = ("all_generated", "mixed_conditioned", "scalar_only_conditioned", "ignored_official")

pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"parity fixtures not at {REF}")
runner = CliRunner()


def _hub_layout(root: Path, slots=TINY_VAES) -> Path:
    """The fixtures as the hub serves VAEs: ``models/vae/<NAME>/model-50-ema.pth`` (links)."""
    for key in slots:
        folder = root / "models" / "vae" / OFFICIAL_VAE_NAMES[key]
        folder.mkdir(parents=True)
        (folder / "model-50-ema.pth").symlink_to(REF / f"vae_tiny_{key}.pth")
    return root / "models" / "vae"


def _flat(root: Path, files: dict[str, str]) -> Path:
    """A flat VAE folder: target name → fixture slot."""
    root.mkdir(parents=True, exist_ok=True)
    for name, key in files.items():
        (root / name).symlink_to(REF / f"vae_tiny_{key}.pth")
    return root


def _one_line(err: pytest.ExceptionInfo, *names: object) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for name in names:
        assert str(name) in msg, msg
    return msg


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
    return _hub_layout(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, vae_folder) -> Path:
    out = tmp_path_factory.mktemp("converted") / "copgen-tiny"
    convert_copgen(BACKBONE, vae_folder, out, config=CONFIG)
    return out


@pytest.fixture(scope="module")
def reloaded(converted) -> CopgenModel:
    return CopgenModel.from_pretrained(converted)


# --- parity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_the_reloaded_backbone_equals_the_imported_one_bit_for_bit(reloaded, case):
    io = load_file(REF / "backbone_tiny_io.safetensors")
    src = f"{case}.in" if case == "ignored_official" else "z"
    latents = {s: io[f"{src}.{s}"] for s in SLOT_NAMES}
    times = {s: io[f"{case}.t.{s}"] for s in SLOT_NAMES}
    dims = read_backbone_config(CONFIG)
    direct = load_copgen_backbone(BACKBONE, **vars(dims))
    with torch.no_grad():
        want, got = direct(latents, times).sample, reloaded.backbone(latents, times).sample
    for s in SLOT_NAMES:
        assert torch.equal(got[s], want[s]), s
        torch.testing.assert_close(got[s], io[f"{case}.out.{s}"], rtol=0, atol=5e-6)


@pytest.mark.parametrize("key", TINY_VAES)
def test_the_reloaded_vaes_equal_the_imported_ones_bit_for_bit(reloaded, key):
    io = load_file(REF / "vae_tiny_io.safetensors")
    direct = load_vae(REF / f"vae_tiny_{key}.pth", key)
    x = io[f"{key}.x"]
    with torch.no_grad():
        moments = encode_moments(reloaded.vae(key), x)
        assert torch.equal(moments, encode_moments(direct, x))
        torch.testing.assert_close(moments, io[f"{key}.moments"], rtol=0, atol=1e-5)
        z = reloaded.encode(key, x)
        assert torch.equal(z, encode(direct, x))
        assert torch.equal(reloaded.decode(key, z), decode(direct, z))
    assert reloaded.scale_factor(key) == pytest.approx(float(io[f"{key}.scale_factor"]), abs=0)


def test_the_model_samples_with_its_preset_and_ignored_default(reloaded, monkeypatch):
    """``sample`` is ``copgen_sample`` with the folder's preset (a 50-step run is the sampler
    tests' job: recorded here, not run)."""
    seen = {}

    def record(backbone, generate, conditions, **kwargs):
        seen.update(backbone=backbone, generate=generate, **kwargs)

    monkeypatch.setattr("geocopgen.copgen.model.copgen_sample", record)
    reloaded.sample(["DEM_DEM"], {}, batch_size=2)
    assert seen["backbone"] is reloaded.backbone and seen["preset"] is COPGEN_SAMPLER
    assert seen["ignored"] == "noise" and seen["batch_size"] == 2
    reloaded.sample(["DEM_DEM"], ignored="omit")
    assert seen["ignored"] == "omit"


# --- the folder ---------------------------------------------------------------------------------
def test_the_folder_records_layout_vaes_sampler_and_provenance(converted, reloaded, vae_folder):
    config = json.loads((converted / "pipeline.json").read_text())
    assert config["kind"] == "copgen" and config["sampler"] == "copgen"
    assert config["vaes"] == list(TINY_VAES) and config["size"] is None
    assert [s["key"] for s in config["slots"]] == list(SLOT_NAMES)
    assert [s["key"] for s in config["slots"] if s["vae"]] == list(TINY_VAES)
    prov = config["provenance"]
    assert prov["official_commit"].startswith("453f8292")
    assert prov["backbone"]["sha256"].startswith("121342b21353f454")  # spec section 0
    assert prov["vaes"]["S1RTC_vh_vv"]["sha256"].startswith("51683a2f90d2f63f")
    assert prov["vaes"]["DEM_DEM"]["file"] == "DEM_64x64_DEM_latent_8/model-50-ema.pth"
    assert sorted(p.name for p in (converted / "vaes").iterdir()) == sorted(TINY_VAES)
    assert reloaded.encodable == TINY_VAES and reloaded.preset.steps == 50
    assert reloaded.resolution_groups()[30.0] == ("DEM_DEM",)
    assert reloaded.ignored == "noise"


def test_absent_vaes_and_scalar_slots_are_named(reloaded):
    with pytest.raises(ModalityError, match=r"no VAE for LULC_LULC .*pass its latents"):
        reloaded.vae("LULC_LULC")
    with pytest.raises(ModalityError, match="no COP-GEN slot 'S2'"):
        reloaded.vae("S2")
    with pytest.raises(ModalityError, match="scalar slot"):
        reloaded.scale_factor("mean_timestamps")


def test_load_model_dispatches_on_the_kind(converted):
    model = geocopgen.load_model(converted, device="cpu")
    assert isinstance(model, CopgenModel) and model.encodable == TINY_VAES
    assert geocopgen.load_model(model) is model
    assert is_copgen_model(converted) and is_copgen_model(HUB_BACKBONE_REPO)
    assert not is_copgen_model(converted / "backbone")


def _copy(converted: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(converted, tmp_path / "model"))


def _edit(folder: Path, **changes) -> None:
    config = json.loads((folder / "pipeline.json").read_text())
    (folder / "pipeline.json").write_text(json.dumps({**config, **changes}))


def test_strict_load_names_missing_and_extra_vaes(converted, tmp_path):
    folder = _copy(converted, tmp_path)
    shutil.copytree(folder / "vaes" / "DEM_DEM", folder / "vaes" / "LULC_LULC")
    shutil.rmtree(folder / "vaes" / "S1RTC_vh_vv")
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, "missing vaes/S1RTC_vh_vv", "unlisted vaes/LULC_LULC")


def test_strict_load_names_a_missing_and_an_extra_tensor(converted, tmp_path):
    folder = _copy(converted, tmp_path)
    weights = folder / "backbone" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["extra.weight"] = tensors.pop("norm.bias")
    save_file(tensors, weights)
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, "1 missing key(s): norm.bias", "1 unexpected key(s): extra.weight")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"kind": "pipeline"}, "has kind 'pipeline', not 'copgen'"),
        ({"format": 9}, "format 9"),
        ({"size": "base"}, "says size 'base' but backbone/ has embed_dim 64"),
        ({"sampler": "ddim"}, "unknown COP-GEN sampler preset 'ddim'"),
    ],
)
def test_strict_load_refuses_a_wrong_header(converted, tmp_path, changes, expected):
    folder = _copy(converted, tmp_path)
    _edit(folder, **changes)
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, expected)


def test_strict_load_refuses_another_layout_and_a_changed_scale_factor(converted, tmp_path):
    folder = _copy(converted, tmp_path)
    config = json.loads((folder / "pipeline.json").read_text())
    config["slots"][1]["chip_px"] = 128
    _edit(folder, slots=config["slots"])
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, "slot layout", "DEM_DEM")
    # a model may record its own scale factor, but its codec must then agree
    config["slots"][1]["chip_px"] = 64
    config["slots"][1]["scale_factor"] = 0.5
    _edit(folder, slots=config["slots"])
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, "the DEM_DEM VAE", "scaling_factor 0.404247", "0.5")
    folder = _copy(converted, tmp_path / "b")
    vae_config = folder / "vaes" / "DEM_DEM" / "config.json"
    vae_config.write_text(vae_config.read_text().replace("0.404247", "0.5"))
    with pytest.raises(CheckpointError) as err:
        CopgenModel.from_pretrained(folder)
    _one_line(err, "the DEM_DEM VAE", "scaling_factor 0.5")


# --- refusals of the converter ------------------------------------------------------------------
def _refused(tmp_path: Path, backbone=BACKBONE, vaes=None, error=CheckpointError, **kw) -> str:
    out = tmp_path / "out"
    with pytest.raises(error) as err:
        convert_copgen(backbone, vaes, out, **{"config": CONFIG, **kw})
    assert not out.exists() and not list(tmp_path.glob(".out.*")), "a half-written output"
    return _one_line(err)


def _saved(tmp_path: Path, state, name: str = "500000_nnet_ema.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_a_checkpoint_of_another_size_than_the_config_is_refused(tmp_path):
    small = copgen_backbone(embed_dim=32, depth=2, num_heads=2).state_dict()
    msg = _refused(tmp_path, _saved(tmp_path, small))
    assert "embed_dim 32, depth 2 (no published COP-GEN size), but the config means " in msg
    assert "embed_dim 64, depth 4" in msg
    msg = _refused(tmp_path, config=None, size="base")
    assert "embed_dim 64, depth 4 (no published COP-GEN size), but size base means " in msg
    msg = _refused(tmp_path, config=None)
    assert "is no published COP-GEN size" in msg and "--config" in msg


def _meta_state(size: str) -> dict[str, torch.Tensor]:
    keys = json.loads((REF / f"keys_full_{size}.json").read_text())["keys"]
    return {name: torch.empty(shape, device="meta") for name, shape, _ in keys}


@pytest.mark.parametrize("size", list(COPGEN_SIZES))
def test_the_size_is_read_off_the_published_key_lists(size):
    assert backbone_dims(_meta_state(size)) == (size, COPGEN_SIZES[size])


def test_a_published_size_other_than_the_one_asked_for_is_named():
    with pytest.raises(CheckpointError) as err:
        backbone_dims(_meta_state("large"), size="base", source="500000_nnet_ema.pth")
    msg = _one_line(err, "500000_nnet_ema.pth", "embed_dim 1152, depth 28 (COP-GEN large)")
    assert "pass --size large" in msg
    with pytest.raises(ConfigError, match="not both"):
        backbone_dims(_meta_state("base"), size="base", config=CONFIG)


def test_missing_and_extra_backbone_keys_are_named(tmp_path):
    state = torch.load(BACKBONE, weights_only=True)
    del state["out_blocks.1.skip_linear.bias"]
    state["time_img_embeds.0.weight"] = torch.zeros(1)
    msg = _refused(tmp_path, _saved(tmp_path, state))
    assert "1 missing key(s): out_blocks.1.skip_linear.bias" in msg
    assert "1 unexpected key(s): time_img_embeds.0.weight" in msg


class _NeedsCode:
    """An object whose unpickling needs this module."""


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    msg = _refused(tmp_path, _saved(tmp_path, {"pos_embed": _NeedsCode()}))
    assert "need code" in msg and "_NeedsCode" in msg
    vaes = tmp_path / "vaes"
    vaes.mkdir()
    torch.save({"encoder.conv_in.weight": _NeedsCode()}, vaes / "DEM_DEM.pth")
    msg = _refused(tmp_path, vaes=vaes)
    assert "DEM_DEM.pth" in msg and "never unpickles code" in msg


def test_missing_and_extra_vae_keys_are_named(tmp_path):
    state = torch.load(REF / "vae_tiny_DEM_DEM.pth", weights_only=True)
    del state["decoder.conv_out.bias"]
    state["loss.discriminator.weight"] = torch.zeros(1)
    vaes = tmp_path / "vaes"
    vaes.mkdir()
    torch.save(state, vaes / "DEM_DEM.pth")
    msg = _refused(tmp_path, vaes=vaes)
    assert "1 missing key(s): decoder.conv_out.bias" in msg and "DEM_DEM.pth" in msg
    assert "1 unexpected key(s): loss.discriminator.weight" in msg


def test_an_output_under_a_file_fails_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr("geocopgen.copgen.convert.read_official", None)  # never reached
    with pytest.raises(OutputError) as err:
        convert_copgen(BACKBONE, None, tmp_path / "file" / "model", config=CONFIG)
    _one_line(err, "is not a writable folder")


def test_a_vae_of_the_wrong_group_is_refused(tmp_path):
    vaes = _flat(tmp_path / "vaes", {"S2L2A_B02_B03_B04_B08.pth": "S1RTC_vh_vv"})
    msg = _refused(tmp_path, vaes=vaes)
    assert "S2L2A_B02_B03_B04_B08.pth" in msg
    assert "2 input and 2 output channels cannot be the S2L2A_B02_B03_B04_B08 VAE" in msg


def test_unplaceable_and_doubled_vae_files_are_refused(tmp_path):
    vaes = _flat(tmp_path / "a", {"sar.pth": "S1RTC_vh_vv"})
    assert "no VAE .pth file named after a COP-GEN slot" in _refused(tmp_path, vaes=vaes)
    with pytest.raises(CheckpointError, match="cannot tell which COP-GEN slot"):
        slot_of_vae_file(Path("sar.pth"))
    vaes = _flat(tmp_path / "b", {"DEM_DEM.pth": "DEM_DEM", "vae_tiny_DEM_DEM.pth": "DEM_DEM"})
    assert "a second VAE for DEM_DEM" in _refused(tmp_path, vaes=vaes)
    (tmp_path / "c").mkdir()
    assert "no VAE .pth file" in _refused(tmp_path, vaes=tmp_path / "c")
    assert "no such folder" in _refused(tmp_path, vaes=tmp_path / "absent")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("models/vae/S2L2A_192x192_B4_3_2_8_latent_8/model-50-ema.pth", "S2L2A_B02_B03_B04_B08"),
        ("S2L1C_32x32_B1_9_10_latent_8/model-50-ema.pth", "S2L1C_B01_B09_B10"),
        ("S2L2A_B01_B09.pth", "S2L2A_B01_B09"),
        ("s2l1c_cloud_mask/model-50-ema.pth", "S2L1C_cloud_mask"),
        ("vae_tiny_S1RTC_vh_vv.pth", "S1RTC_vh_vv"),
        ("LULC_LULC/DEM_DEM.pth", "DEM_DEM"),  # the file name decides before its folder
    ],
)
def test_the_file_to_slot_rule(path, key):
    assert slot_of_vae_file(Path(path)) == key


def test_a_name_that_fits_two_slots_is_refused():
    with pytest.raises(CheckpointError, match="fits several slots"):
        slot_of_vae_file(Path("DEM_DEM+S1RTC_vh_vv.pth"))


def test_a_whole_clone_of_the_official_vaes_converts_and_an_unslotted_vae_is_noted(tmp_path):
    """Issue 27 row 18: the official README clones all of copgen-vaes, whose configs also define
    GOOGLE_EMBEDS, a modality the COP-GEN layout has no slot for: skipped with a note."""
    vaes = _hub_layout(tmp_path / "clone")
    embeds = vaes / "GOOGLE_EMBEDS_192x192_latent_8"
    embeds.mkdir()
    (embeds / "model-50-ema.pth").symlink_to(REF / "vae_tiny_DEM_DEM.pth")
    notes: list[str] = []
    model = convert_copgen(BACKBONE, vaes, tmp_path / "m", config=CONFIG, progress=notes.append)
    assert model.encodable == TINY_VAES
    skipped = [n for n in notes if n.startswith("skipped")]
    assert skipped == [f"skipped {embeds / 'model-50-ema.pth'}: its name names no COP-GEN slot"]


def test_vae_files_come_in_slot_order_and_hidden_folders_are_skipped(tmp_path):
    vaes = _hub_layout(tmp_path, slots=("S2L2A_B02_B03_B04_B08", "DEM_DEM"))
    _flat(vaes / ".cache", {"S1RTC_vh_vv.pth": "S1RTC_vh_vv"})
    assert list(find_vae_files(vaes)) == ["DEM_DEM", "S2L2A_B02_B03_B04_B08"]


def test_an_existing_output_needs_overwrite_and_only_a_model_is_overwritten(
    converted, tmp_path, vae_folder
):
    out = _copy(converted, tmp_path)
    with pytest.raises(OutputError) as err:
        convert_copgen(BACKBONE, vae_folder, out, config=CONFIG)
    _one_line(err, out, "--overwrite")
    (out / "backbone" / "marker").write_text("old")
    model = convert_copgen(BACKBONE, None, out, config=CONFIG, overwrite=True)
    assert model.encodable == () and not (out / "backbone" / "marker").exists()
    assert CopgenModel.from_pretrained(out).encodable == ()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_text("")
    with pytest.raises(OutputError, match=r"without pipeline\.json"):
        convert_copgen(BACKBONE, None, other, config=CONFIG, overwrite=True)
    assert (other / "cat.jpg").exists()


def test_a_config_without_dims_or_with_another_layout_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no positive integer num_heads"):
        read_backbone_config({"embed_dim": 64, "depth": 4})
    kwargs = json.loads(CONFIG.read_text())["constructor_kwargs"]
    kwargs["img_sizes"]["DEM_DEM"] = 16
    with pytest.raises(ConfigError, match=r"img_sizes differs .* at DEM_DEM"):
        read_backbone_config({"nnet": kwargs})


# --- the CLI ------------------------------------------------------------------------------------
def test_the_cli_converts_and_the_folder_equals_the_python_one(converted, tmp_path, vae_folder):
    out = tmp_path / "cli-model"
    args = ["convert", "copgen", str(BACKBONE), str(vae_folder), "-o", str(out)]
    result = runner.invoke(app, [*args, "--config", str(CONFIG)])
    assert result.exit_code == 0, result.output
    assert "converting the S1RTC_vh_vv VAE" in result.output
    assert "VAEs for 3 of 10 image slots" in result.output
    for part in ("backbone", *(f"vaes/{k}" for k in TINY_VAES)):
        a = load_file(out / part / "diffusion_pytorch_model.safetensors")
        b = load_file(converted / part / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    again = runner.invoke(app, [*args, "--config", str(CONFIG)])
    assert again.exit_code == 1 and "Error: " in again.output and "--overwrite" in again.output


def test_cli_refusals_are_one_error_line_and_leave_nothing(tmp_path):
    vaes = _flat(tmp_path / "vaes", {"S2L2A_B02_B03_B04_B08.pth": "S1RTC_vh_vv"})
    out = tmp_path / "out"
    args = ["convert", "copgen", str(BACKBONE), str(vaes), "-o", str(out), "--size", "base"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Error: " in result.output and "size base means embed_dim 1024" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--hub", "b.pth"],
        ["b.pth"],
        ["b.pth", "vaes", "--revision", "main"],
        ["b.pth", "vaes", "--config", "c.json", "--size", "base"],
        ["b.pth", "vaes", "--size", "tiny"],
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, args):
    result = runner.invoke(app, ["convert", "copgen", *args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output


# --- the hub path (download functions replaced: no network) --------------------------------------
@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """``hf_hub_download``/``snapshot_download`` serving the fixtures from a fake cache."""
    calls = []
    commit = "0123456789abcdef0123456789abcdef01234567"

    def hf_hub_download(repo_id, filename, *, revision=None, cache_dir=None):
        calls.append((repo_id, filename, revision))
        path = tmp_path / "cache" / "snapshots" / commit / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BACKBONE, path)
        return str(path)

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, cache_dir=None):
        calls.append((repo_id, tuple(allow_patterns), revision))
        root = tmp_path / "vae-cache" / "snapshots" / commit
        if not root.exists():
            for key in TINY_VAES:  # the hub repo root is models/vae (the README clones it there)
                folder = root / OFFICIAL_VAE_NAMES[key]
                folder.mkdir(parents=True)
                shutil.copy(REF / f"vae_tiny_{key}.pth", folder / "model-50-ema.pth")
        return str(root)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr("geocopgen.copgen.convert.hub_unreachable", lambda: None)
    return calls


def test_the_hub_path_fetches_only_the_needed_files_and_records_them(fake_hub, tmp_path):
    model = convert_copgen_from_hub(tmp_path / "m", config=CONFIG, revision="v1")
    assert fake_hub[0] == ("mespinosami/copgen-base", "500000_nnet_ema.pth", "v1")
    repo, patterns, _ = fake_hub[1]
    assert repo == "mespinosami/copgen-vaes" and len(patterns) == 10
    assert all(p.startswith("*") and p.endswith("_latent_8/model-50-ema.pth") for p in patterns)
    assert model.encodable == TINY_VAES
    prov = CopgenModel.from_pretrained(tmp_path / "m").provenance
    assert prov["hub"]["backbone"] == {
        "repo": "mespinosami/copgen-base",
        "revision": "v1",
        "commit": "0123456789abcdef0123456789abcdef01234567",
    }
    assert prov["backbone"]["sha256"] == file_sha256(BACKBONE)


def test_the_hub_path_in_memory_and_through_the_cli(fake_hub, converted, tmp_path):
    model = load_official_from_hub(config=CONFIG)
    direct = CopgenModel.from_pretrained(converted)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            model.backbone.state_dict().values(), direct.backbone.state_dict().values(), strict=True
        )
    )
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["convert", "copgen", "--hub", "--config", str(CONFIG), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "downloading 500000_nnet_ema.pth" in result.output and is_copgen_model(out)
    with pytest.raises(CheckpointError, match="no published COP-GEN size"):
        load_copgen(HUB_BACKBONE_REPO)  # the real route: tiny is no published size


def test_a_failed_download_says_what_to_do(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr("geocopgen.copgen.convert.hub_unreachable", lambda: None)
    with pytest.raises(CheckpointError) as err:
        convert_copgen_from_hub(tmp_path / "m")
    _one_line(err, "couldn't connect", "geocopgen convert copgen BACKBONE.pth VAE_FOLDER")
    assert not (tmp_path / "m").exists()


def test_an_unreachable_hub_fails_in_seconds_with_one_line(tmp_path):
    """Issue 27 row 12: offline, ``convert copgen --hub`` said each of the hub client's retries
    twice for 47 s. Pointed at a loopback port nothing listens on (and an empty hub cache), it
    now prints one error line within seconds, exits 1 and creates nothing."""
    with socket.socket() as s:  # a free port: bound, then closed, so nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    env.update(PYTHONPATH=str(Path(__file__).parents[1]))
    out = tmp_path / "m"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "geocopgen", "convert", "copgen", "--hub", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and f"127.0.0.1:{port}" in lines[0]
    assert "geocopgen convert copgen BACKBONE.pth VAE_FOLDER -o OUT" in lines[0]
    assert elapsed < 15, elapsed  # importing torch is most of it; the retries took 47 s
    assert not out.exists()
