"""The blockiness measure of issue #28 (``bench/blockiness.py``): a lattice of block edges scores
high, real rasters and smooth fields near 1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from conftest import DATA

_SPEC = importlib.util.spec_from_file_location(
    "blockiness", Path(__file__).parents[1] / "bench" / "blockiness.py"
)
measure = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(measure)


def test_blocks_score_high_and_smooth_fields_near_one():
    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.arange(96.0), np.arange(96.0)) + rng.normal(0, 1, (96, 96))
    blocks = np.kron(rng.normal(0, 10, (12, 12)), np.ones((8, 8)))  # flat 8 px squares
    assert measure.blockiness(blocks, 8) == np.inf
    blocks += rng.normal(0, 0.1, blocks.shape)
    assert measure.blockiness(smooth, 8) < 1.3
    assert measure.blockiness(blocks, 8) > 50
    assert measure.blockiness(blocks[3:, 5:], 8) > 50  # any lattice offset


def test_real_dems_and_s1_have_no_preferred_edges():
    real = [DATA / "dem" / "rome_30m_egm96.tif", DATA / "terramind" / "S1RTC" / "38D_378R_2_3.tif"]
    for path in real:
        assert measure.raster_blockiness(path, 8) < 1.5
        assert measure.raster_blockiness(path, 24) < 1.5
