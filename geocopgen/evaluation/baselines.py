"""Reference predictors that every evaluation report sets beside the model.

A number means little alone: a DEM MAE of 20 m is excellent in the Andes and poor on a flood
plain. Each report therefore also scores two predictors fitted on the *training* pixels only:
the training-set mean of each target band, and an ordinary least-squares map from the condition
bands of a pixel to its target bands. What the model adds is the gap to these.
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
    """Per-pixel linear regression (with intercept) from condition bands to target bands."""

    coef: np.ndarray | None = None

    def fit(self, conditions: list[np.ndarray], targets: list[np.ndarray]) -> LinearBaseline:
        x = np.concatenate([_pixels(c) for c in conditions])
        y = np.concatenate([_pixels(t) for t in targets])
        keep = np.isfinite(x).all(1) & np.isfinite(y).all(1)
        if keep.sum() <= x.shape[1]:
            raise ValueError("LinearBaseline needs more valid pixels than condition bands")
        design = np.hstack([x[keep], np.ones((keep.sum(), 1))])
        self.coef, *_ = np.linalg.lstsq(design, y[keep], rcond=None)
        return self

    def predict(self, condition: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LinearBaseline.predict called before fit")
        x = _pixels(condition)
        y = np.hstack([x, np.ones((len(x), 1))]) @ self.coef
        return y.T.reshape((self.coef.shape[1], *tuple(np.shape(condition)[1:])))
