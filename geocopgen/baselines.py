"""Reference predictors that every evaluation report sets beside the model, and that gap filling
ships as a method (``geocopgen fill --method ridge``).

A number means little alone: a DEM MAE of 20 m is excellent in the Andes and poor on a flood
plain. Each report therefore also scores two predictors fitted on the *training* pixels only:
the training-set mean of each target band, and a ridge-regularised linear map from the condition
bands of a pixel to its target bands. What the model adds is the gap to these.

The linear map is ridge, not ordinary least squares, because condition bands are nearly
collinear (neighbouring S2 bands, L1C beside L2A): least squares then fits huge opposing
coefficients that cancel on the training places and explode on a new one (73.7 dB S1 error in
the leave-one-place-out run that used it). Shrinking standardised coefficients keeps the
baseline a fair, stable reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearBaseline", "MeanBaseline"]


def _pixels(a: np.ndarray) -> np.ndarray:
    """(bands, ...) → (n_pixels, bands)."""
    a = np.asarray(a, np.float64)
    return a.reshape(a.shape[0], -1).T


@dataclass
class MeanBaseline:
    """Predicts every pixel as the per-band mean of the training targets."""

    mean: np.ndarray | None = None

    def fit(self, targets: list[np.ndarray]) -> MeanBaseline:
        pix = np.concatenate([_pixels(t) for t in targets])
        self.mean = np.nanmean(pix, axis=0)
        return self

    def predict(self, like: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("MeanBaseline.predict called before fit")
        shape = (len(self.mean), *tuple(np.shape(like)[1:]))
        return np.broadcast_to(self.mean.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


@dataclass
class LinearBaseline:
    """Per-pixel ridge regression (with intercept) from condition bands to target bands.

    Condition bands are standardised on the training pixels and the penalty is ``alpha`` per
    training pixel, so ``alpha`` means the same whatever the band scales and pixel count; the
    intercept is not penalised.
    """

    alpha: float = 1e-2
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None

    def fit(self, conditions: list[np.ndarray], targets: list[np.ndarray]) -> LinearBaseline:
        x = np.concatenate([_pixels(c) for c in conditions])
        y = np.concatenate([_pixels(t) for t in targets])
        keep = np.isfinite(x).all(1) & np.isfinite(y).all(1)
        if keep.sum() <= x.shape[1]:
            raise ValueError("LinearBaseline needs more valid pixels than condition bands")
        x, y = x[keep], y[keep]
        x_mean, y_mean = x.mean(0), y.mean(0)
        x_std = x.std(0)
        x_std[x_std == 0] = 1.0
        xs = (x - x_mean) / x_std
        gram = xs.T @ xs + self.alpha * len(xs) * np.eye(xs.shape[1])
        weights = np.linalg.solve(gram, xs.T @ (y - y_mean)) / x_std[:, None]
        self.coef, self.intercept = weights, y_mean - x_mean @ weights
        return self

    def predict(self, condition: np.ndarray) -> np.ndarray:
        if self.coef is None or self.intercept is None:
            raise RuntimeError("LinearBaseline.predict called before fit")
        y = _pixels(condition) @ self.coef + self.intercept
        return y.T.reshape((self.coef.shape[1], *tuple(np.shape(condition)[1:])))
