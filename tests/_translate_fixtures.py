"""Models and helpers shared by the translation tests (``test_translate*``, api, accessor, CLI).

``tiny_pipeline`` is a random 4-modality pipeline with 64 px chips (latent size 8): fast enough
to run every mechanical check on real rasters. ``BUNDLED`` is the bundled default model, which
the end-to-end tests use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rasterio
import torch
from _models_fixtures import tiny_autoencoder, tiny_backbone

from geocopgen.models import CopGenPipeline
from geocopgen.weights import DEFAULT_MODEL

BUNDLED = DEFAULT_MODEL
MODALITIES = ("dem", "s1rtc", "s2l1c", "s2l2a")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's models on one thread: these models are small, and on a 2-core machine
    shared with other jobs two intra-op threads wait on each other far more than they help."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_pipeline(steps: int = 3) -> CopGenPipeline:
    """Random weights, 64 px chips (8 latent cells), every modality with an autoencoder."""
    codecs = {m: tiny_autoencoder(m, seed=i) for i, m in enumerate(MODALITIES)}
    return CopGenPipeline(
        tiny_backbone(MODALITIES, latent_size=8), autoencoders=codecs, num_inference_steps=steps
    )


def save_tiny(folder: Path) -> Path:
    return tiny_pipeline().save_pretrained(folder)


def grid_facts(path: Path) -> tuple:
    """(crs, transform, width, height, nodata): what must come out exactly as expected."""
    with rasterio.open(path) as src:
        return (src.crs, src.transform, src.width, src.height, src.nodata)
