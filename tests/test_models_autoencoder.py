"""Latent codecs on real tiles: shapes, the data-fitted scale, save/load, the SD thumbnail VAE."""

from __future__ import annotations

import pytest
import torch
from _models_fixtures import read_tile, tiny_autoencoder
from diffusers import AutoencoderKL

from geocopgen.errors import CheckpointError, ConfigError
from geocopgen.models import (
    SD_SCALING_FACTOR,
    ModalityAutoencoder,
    ThumbnailAutoencoder,
    fit_scaling_factor,
    load_model,
    sample_latents,
    save_model,
)

PLACES = ("38D_378R_2_3", "637U_59R_1_3", "282D_485L_3_3")


@pytest.fixture(scope="module")
def s2_tiles() -> torch.Tensor:
    return torch.cat([read_tile("s2l2a", p, size=64) for p in PLACES])


def test_bands_in_and_out_and_8x_latent_moments(s2_tiles):
    ae = tiny_autoencoder("s2l2a")
    assert ae.config.in_channels == ae.config.out_channels == 12
    with torch.no_grad():
        moments = ae.encode_moments(s2_tiles)
        z = ae.to_latents(s2_tiles)
        x = ae.from_latents(z)
    assert moments.shape == (3, 8, 8, 8)  # (B, 2z, H/8, W/8): mean ‖ logvar
    assert z.shape == (3, 4, 8, 8)
    assert x.shape == s2_tiles.shape
    assert torch.equal(z, moments[:, :4] * ae.config.scaling_factor)  # mean by default
    assert ae.downsampling == 8


def test_default_autoencoder_is_the_measured_cpu_size():
    ae = ModalityAutoencoder(modality="s2l2a")
    assert sum(p.numel() for p in ae.parameters()) == pytest.approx(3.9e6, rel=0.01)
    assert ae.config.latent_channels == 8 and list(ae.config.block_out_channels) == [
        32,
        64,
        128,
        128,
    ]


def test_fitted_scale_gives_unit_std_latents(s2_tiles):
    ae = tiny_autoencoder("s2l2a")
    factor = fit_scaling_factor(ae, [s2_tiles[:2], s2_tiles[2:]], sample=False)
    assert ae.config.scaling_factor == factor
    with torch.no_grad():
        z = ae.to_latents(s2_tiles)
    assert float(z.std(unbiased=False)) == pytest.approx(1.0, abs=0.02)


def test_posterior_samples_are_seeded(s2_tiles):
    ae = tiny_autoencoder("s2l2a")
    with torch.no_grad():
        moments = ae.encode_moments(s2_tiles)
    a = sample_latents(moments, 0.5, generator=torch.Generator().manual_seed(3))
    b = sample_latents(moments, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_latents(moments, 0.5, sample=False))


def test_save_load_round_trip_keeps_modality_scale_and_outputs(tmp_path):
    ae = tiny_autoencoder("dem")
    dem = torch.cat([read_tile("dem", p) for p in PLACES])
    fit_scaling_factor(ae, [dem])
    save_model(ae, tmp_path / "dem")
    assert (tmp_path / "dem" / "diffusion_pytorch_model.safetensors").exists()
    again = load_model(ModalityAutoencoder, tmp_path / "dem")
    assert again.config.modality == "dem"
    assert again.config.scaling_factor == ae.config.scaling_factor
    with torch.no_grad():
        assert torch.equal(again.to_latents(dem), ae.to_latents(dem))
        z = ae.to_latents(dem)
        assert torch.equal(again.from_latents(z), ae.from_latents(z))


def test_bad_config_and_bad_files_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="4 entries"):
        ModalityAutoencoder(modality="dem", block_out_channels=(32, 64, 128))
    with pytest.raises(ConfigError, match="norm_num_groups"):
        ModalityAutoencoder(modality="dem", block_out_channels=(8, 8, 16, 24), norm_num_groups=16)
    folder = tmp_path / "ae"
    save_model(tiny_autoencoder("dem"), folder)
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"found diffusion_pytorch_model\.bin"):
        load_model(ModalityAutoencoder, folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(ModalityAutoencoder, folder)
    with pytest.raises(CheckpointError, match="holds a ModalityAutoencoder"):
        load_model(ThumbnailAutoencoder, folder)


def test_thumbnail_codec_loads_a_local_sd_layout_vae(tmp_path):
    """A tiny randomly initialised VAE in the SD KL-f8 layout, saved like a hub download."""
    torch.manual_seed(0)
    sd_like = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=256,
        scaling_factor=0.5,  # deliberately wrong: the official latents need 0.18215
    )
    sd_like.save_pretrained(tmp_path / "sd-vae")
    vae = ThumbnailAutoencoder.from_pretrained(tmp_path / "sd-vae")
    assert vae.config.scaling_factor == SD_SCALING_FACTOR
    rgb = torch.rand(1, 3, 256, 256) * 2 - 1  # official thumbnails: RGB in [-1, 1], 256 px
    with torch.no_grad():
        z = vae.to_latents(rgb)
        moments = vae.encode_moments(rgb)
        out = vae.from_latents(z)
    assert z.shape == (1, 4, 32, 32)  # the official backbone's 4x32x32
    torch.testing.assert_close(z, moments[:, :4] * SD_SCALING_FACTOR)
    assert out.shape == rgb.shape
