"""Metrics on hand-made arrays whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from geocopgen.evaluation import (
    LinearBaseline,
    MeanBaseline,
    mae,
    mmd_rbf,
    psnr,
    rmse,
    spectral_range_coverage,
    ssim,
    wasserstein_1d,
)


def test_mae_rmse_known_values_and_nan_ignored() -> None:
    true = np.zeros((2, 4, 4))
    pred = np.zeros((2, 4, 4))
    pred[0] = 3.0  # constant error 3
    pred[1, :2] = 4.0  # half the pixels off by 4
    pred[1, 3, 3] = np.nan  # invalid pixel, must be ignored
    assert mae(pred, true)[0] == pytest.approx(3.0)
    assert mae(pred, true)[1] == pytest.approx(8 * 4.0 / 15)
    assert rmse(pred, true)[1] == pytest.approx(np.sqrt(8 * 16.0 / 15))


def test_demeaned_error_removes_a_constant_offset() -> None:
    rng = np.random.default_rng(1)
    true = rng.normal(500.0, 50.0, (1, 16, 16))
    pred = true + 120.0  # right relief, wrong absolute height
    assert mae(pred, true)[0] == pytest.approx(120.0)
    assert mae(pred, true, demean=True)[0] == pytest.approx(0.0, abs=1e-9)
    assert rmse(pred, true, demean=True)[0] == pytest.approx(0.0, abs=1e-9)


def test_psnr_of_uniform_error() -> None:
    true = np.full((1, 8, 8), 0.5)
    pred = true + 0.01  # RMSE 0.01 on range 1 → 40 dB
    assert psnr(pred, true, data_range=1.0)[0] == pytest.approx(40.0)


def test_ssim_identity_is_one_and_noise_lowers_it() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((2, 32, 32))
    assert ssim(img, img) == pytest.approx([1.0, 1.0])
    noisy = img + rng.normal(0, 0.2, img.shape)
    assert (ssim(noisy, img) < 0.9).all()
    assert (ssim(1.0 - img, img) < 0).all()  # same brightness, inverted structure


def test_wasserstein_of_shifted_distribution_is_the_shift() -> None:
    rng = np.random.default_rng(3)
    real = rng.normal(0, 1, (1, 100_000))
    assert wasserstein_1d(real + 2.5, real)[0] == pytest.approx(2.5, rel=1e-6)
    # uniform[0,1] vs uniform[0,2]: W1 = ∫|q - 2q| dq = 0.5
    u = np.linspace(0, 1, 200_001)[None]
    assert wasserstein_1d(2 * u, u)[0] == pytest.approx(0.5, abs=1e-3)


def test_mmd_is_zero_for_same_and_positive_for_different() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (3, 40, 40))
    b = rng.normal(0, 1, (3, 40, 40))
    c = rng.normal(1.5, 1, (3, 40, 40))
    assert abs(mmd_rbf(a, b)) < 0.01
    assert mmd_rbf(c, a) > 0.2


def test_spectral_range_coverage_known_overlaps() -> None:
    real = np.linspace(0, 1, 10001)[None]
    assert spectral_range_coverage(real, real)[0] == pytest.approx(1.0)
    half = np.linspace(0, 0.5, 10001)[None]  # reaches the lower half of the range only
    assert spectral_range_coverage(half, real, lower=0, upper=100)[0] == pytest.approx(0.5)
    collapsed = np.full((1, 100), 0.5)  # mean predictor
    assert spectral_range_coverage(collapsed, real)[0] == pytest.approx(0.0)


def test_baselines_recover_a_linear_map() -> None:
    rng = np.random.default_rng(5)
    cond = rng.random((3, 20, 20))
    target = (2.0 * cond[0] - cond[2] + 0.3)[None]
    lin = LinearBaseline().fit([cond], [target])
    assert np.allclose(lin.predict(cond), target, atol=0.02)  # ridge: slightly shrunk
    assert np.allclose(LinearBaseline(alpha=0.0).fit([cond], [target]).predict(cond), target)
    mean = MeanBaseline().fit([target])
    assert np.allclose(mean.predict(target), target.mean())


def test_linear_baseline_stays_stable_on_collinear_conditions() -> None:
    """Two nearly identical condition bands: least squares fits huge cancelling weights that
    explode where the bands part; the ridge baseline does not."""
    rng = np.random.default_rng(7)
    band = rng.random((1, 30, 30))
    cond = np.concatenate([band, band + rng.normal(0, 1e-6, band.shape)])
    target = 3.0 * band + rng.normal(0, 0.01, band.shape)
    new = np.concatenate([band, band + 0.5])  # the bands disagree on a new place
    ols = LinearBaseline(alpha=0.0).fit([cond], [target])
    ridge = LinearBaseline().fit([cond], [target])
    assert np.abs(ols.coef).max() > 100
    assert np.abs(ridge.coef).max() < 5
    assert np.abs(ridge.predict(new) - 3.0 * band).mean() < 1.0
    assert np.abs(ols.predict(new) - 3.0 * band).mean() > 10.0
