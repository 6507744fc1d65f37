"""Evaluation: metrics in physical units, distribution metrics, baselines, and the report that
puts a model beside them (``evaluate``)."""

from geocopgen.baselines import LinearBaseline, MeanBaseline
from geocopgen.evaluation.features import FeatureNet, load_feature_extractor
from geocopgen.evaluation.metrics import (
    mae,
    mmd_rbf,
    psnr,
    rmse,
    spectral_range_coverage,
    ssim,
    wasserstein_1d,
)
from geocopgen.evaluation.report import Direction, EvaluationReport, evaluate

__all__ = [
    "Direction",
    "EvaluationReport",
    "FeatureNet",
    "LinearBaseline",
    "MeanBaseline",
    "evaluate",
    "load_feature_extractor",
    "mae",
    "mmd_rbf",
    "psnr",
    "rmse",
    "spectral_range_coverage",
    "ssim",
    "wasserstein_1d",
]
