"""Translation metrics in physical units, paired and distributional.

Paired metrics (MAE, RMSE, PSNR, SSIM) say how close one generated raster is to the observed one.
Mappings between modalities are one-to-many (S2 → S1 has no single right answer), so geocopgen
also reports distribution metrics in the COP-GEN benchmark family — per-band Wasserstein
distance, MMD and spectral-range coverage — that compare *what values occur* rather than *where*.
All functions take arrays shaped ``(bands, ...)`` in physical units and ignore NaN (invalid)
pixels; none needs a downloaded network.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "mae",
    "mmd_rbf",
    "psnr",
    "rmse",
    "spectral_range_coverage",
    "ssim",
    "wasserstein_1d",
]


def _valid(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {true.shape}")
    return np.isfinite(pred) & np.isfinite(true)


def _per_band(values: np.ndarray, valid: np.ndarray, reduce) -> np.ndarray:
    pairs = zip(values, valid, strict=True)
    return np.array([reduce(v[m]) if m.any() else np.nan for v, m in pairs])


def mae(pred: np.ndarray, true: np.ndarray, *, demean: bool = False) -> np.ndarray:
    """Mean absolute error per band. ``demean`` removes each band's mean offset first.

    The demeaned form matters for the DEM: an S2 → DEM model cannot know the absolute height of
    a flat plateau, so both the absolute error and the error of the relief are reported.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    valid = _valid(pred, true)
    diff = pred - true
    if demean:
        diff = diff - _per_band(diff, valid, np.mean).reshape((-1,) + (1,) * (diff.ndim - 1))
    return _per_band(np.abs(diff), valid, np.mean)


def rmse(pred: np.ndarray, true: np.ndarray, *, demean: bool = False) -> np.ndarray:
    """Root mean squared error per band, optionally of the demeaned difference (see :func:`mae`)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    valid = _valid(pred, true)
    diff = pred - true
    if demean:
        diff = diff - _per_band(diff, valid, np.mean).reshape((-1,) + (1,) * (diff.ndim - 1))
    return np.sqrt(_per_band(diff**2, valid, np.mean))


def psnr(pred: np.ndarray, true: np.ndarray, *, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per band in dB, for a fixed physical ``data_range``.

    The range is fixed (reflectance 1.0 by default), not taken from the data, so numbers are
    comparable across scenes.
    """
    err = rmse(pred, true)
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(data_range / err)


def ssim(
    pred: np.ndarray, true: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5
) -> np.ndarray:
    """Structural similarity per band (Wang et al. 2004, Gaussian window, K1=0.01, K2=0.03).

    Invalid pixels are replaced by the band's valid mean before filtering and left out of the
    final average, so nodata does not masquerade as structure.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.ndim != 3:
        raise ValueError(f"ssim needs (bands, y, x) arrays, got shape {pred.shape}")
    valid = _valid(pred, true)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    radius = max(1, round(3.5 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    kernel = torch.from_numpy(np.outer(g, g))[None, None]

    def blur(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(a)[:, None]
        return F.conv2d(t, kernel, padding=radius).squeeze(1).numpy()

    fill = lambda a: np.where(valid, a, _per_band(a, valid, np.mean)[:, None, None])  # noqa: E731
    p, t = fill(pred), fill(true)
    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    smap = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    inner = np.zeros_like(valid)
    inner[:, radius:-radius, radius:-radius] = True
    keep = valid & inner if (inner & valid).any() else valid
    return _per_band(smap, keep, np.mean)


def _band_samples(a: np.ndarray) -> list[np.ndarray]:
    flat = np.asarray(a, np.float64).reshape(a.shape[0], -1)
    return [row[np.isfinite(row)] for row in flat]


def wasserstein_1d(
    generated: np.ndarray, real: np.ndarray, *, n_quantiles: int = 1000
) -> np.ndarray:
    """Per-band 1-Wasserstein distance between value distributions (physical units).

    Computed exactly as the L1 distance between quantile functions, evaluated on a fine common
    grid so samples of different sizes compare.
    """
    q = (np.arange(n_quantiles) + 0.5) / n_quantiles
    out = []
    for g, r in zip(_band_samples(generated), _band_samples(real), strict=True):
        out.append(
            np.mean(np.abs(np.quantile(g, q) - np.quantile(r, q))) if g.size and r.size else np.nan
        )
    return np.array(out)


def mmd_rbf(
    generated: np.ndarray,
    real: np.ndarray,
    *,
    bandwidth: float | None = None,
    max_samples: int = 2000,
    seed: int = 0,
) -> float:
    """Unbiased squared MMD between pixel spectra with an RBF kernel.

    Pixels are vectors of all bands (so correlations between bands count). The bandwidth defaults
    to the median pairwise distance of the pooled sample; samples are capped at ``max_samples``
    pixels per side with a fixed seed to keep the O(n²) kernel cheap and reproducible.
    """
    rng = np.random.default_rng(seed)

    def pixels(a: np.ndarray) -> np.ndarray:
        v = np.asarray(a, np.float64).reshape(a.shape[0], -1).T
        v = v[np.isfinite(v).all(1)]
        if len(v) > max_samples:
            v = v[rng.choice(len(v), max_samples, replace=False)]
        return v

    x, y = pixels(generated), pixels(real)
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if bandwidth is None:
        pooled = torch.cat([xt, yt])
        d = torch.cdist(pooled, pooled)
        bandwidth = float(d[d > 0].median()) if (d > 0).any() else 1.0
    gamma = 1.0 / (2.0 * bandwidth**2)
    kxx = torch.exp(-gamma * torch.cdist(xt, xt) ** 2)
    kyy = torch.exp(-gamma * torch.cdist(yt, yt) ** 2)
    kxy = torch.exp(-gamma * torch.cdist(xt, yt) ** 2)
    n, m = len(x), len(y)
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(term_x + term_y - 2 * kxy.mean())


def spectral_range_coverage(
    generated: np.ndarray, real: np.ndarray, *, lower: float = 1.0, upper: float = 99.0
) -> np.ndarray:
    """Per band, the share of the real value range that the generated values also reach.

    The range is the ``[lower, upper]`` percentile interval (robust to single outliers); coverage
    is the length of the overlap of the two intervals over the length of the real one, in [0, 1].
    A model that collapses to the mean scores near 0 even when its MAE looks good.
    """
    out = []
    for g, r in zip(_band_samples(generated), _band_samples(real), strict=True):
        if not (g.size and r.size):
            out.append(np.nan)
            continue
        g_lo, g_hi = np.percentile(g, [lower, upper])
        r_lo, r_hi = np.percentile(r, [lower, upper])
        width = r_hi - r_lo
        overlap = max(0.0, min(g_hi, r_hi) - max(g_lo, r_lo))
        out.append(overlap / width if width > 0 else float(g_lo <= r_lo <= g_hi))
    return np.array(out)
