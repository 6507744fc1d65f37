"""Evaluation: metrics in physical units, distribution metrics and baselines."""

from geocopgen.evaluation.baselines import LinearBaseline, MeanBaseline
from geocopgen.evaluation.metrics import (
    mae,
    mmd_rbf,
    psnr,
    rmse,
    spectral_range_coverage,
    ssim,
    wasserstein_1d,
)

__all__ = [
    "LinearBaseline",
    "MeanBaseline",
    "mae",
    "mmd_rbf",
    "psnr",
    "rmse",
    "spectral_range_coverage",
    "ssim",
    "wasserstein_1d",
]
