"""Calibration: a monotone map from a scorer's output to the probability that a code is correct.

Isotonic regression (scikit-learn) fitted on held-out predictions, stored as its two breakpoint arrays
(so the artifact holds numbers, not a pickled estimator) and applied by linear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from models.errors import ArtifactError


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Piecewise-linear monotone map through (x, y) breakpoints."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 1 or self.x.shape != self.y.shape or self.x.size < 1:
            raise ArtifactError(f"calibration breakpoints must be two equal 1-D arrays, got {self.x.shape}, {self.y.shape}")
        if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < 0):
            raise ArtifactError("calibration breakpoints must be non-decreasing")

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, same shape as `scores`."""
        return np.interp(scores, self.x, self.y).astype(np.float32)

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> IsotonicCalibrator:
        """Fit on held-out (score, 0/1 label) pairs."""
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        model.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
        return cls(np.asarray(model.X_thresholds_, np.float32), np.asarray(model.y_thresholds_, np.float32))
