"""Calibration: a monotone map from a scorer's output to the probability that a code is correct.

Isotonic regression (scikit-learn) fitted on held-out predictions, stored as its two breakpoint arrays
(so the artifact holds numbers, not a pickled estimator) and applied by linear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from models.errors import ArtifactError

# Isotonic calibration is flat in steps; a raw score this small breaks the ties within a step, so the
# calibrated order is the raw order.
TIE_BREAK = 1e-6


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
    def fit(cls, scores: np.ndarray, labels: np.ndarray, bins: int | None = None) -> IsotonicCalibrator:
        """Fit on held-out (score, 0/1 label) pairs.

        Args:
            bins: fit on this many equal-count bins of the sorted scores (each at its mean score and
                positive rate) instead of on every pair, so that no step of the map rests on a handful of
                pairs (a few right codes at the very top would otherwise be mapped to 1.0).
        """
        x, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
        weights = None
        if bins is not None:
            chunks = [c for c in np.array_split(np.argsort(x, kind="stable"), bins) if c.size]
            x, y = np.array([x[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])
            weights = np.array([c.size for c in chunks], dtype=np.float64)
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        model.fit(x, y, sample_weight=weights)
        return cls(np.asarray(model.X_thresholds_, np.float32), np.asarray(model.y_thresholds_, np.float32))

    def to_dict(self) -> dict[str, list[float]]:
        """The breakpoints as JSON-able lists."""
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}

    @classmethod
    def from_dict(cls, data: dict, where: str = "calibration") -> IsotonicCalibrator:
        """From `to_dict`'s output.

        Raises:
            ArtifactError: the breakpoints are missing or malformed (`where` names them in the message).
        """
        try:
            return cls(np.asarray(data["x"], np.float32), np.asarray(data["y"], np.float32))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: expected breakpoint lists 'x' and 'y' ({exc})") from exc


def calibrate_keeping_order(calibrator: IsotonicCalibrator, raw: np.ndarray, squash: bool = True,
                            tie_break: float = TIE_BREAK) -> np.ndarray:
    """Calibrated probabilities whose order is the raw scores' order. An unbounded raw score (a
    lambdarank output) is squashed before it breaks ties; a score in [0, 1] is used as it is. Scores
    kept in float32 need a `tie_break` of about 1e-3 for the order to survive the rounding."""
    tie = 1.0 / (1.0 + np.exp(-raw)) if squash else raw
    return np.clip(calibrator(raw) + tie_break * tie, 0.0, 1.0)
