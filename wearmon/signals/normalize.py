"""Per-channel standardisation, the one normalisation used by training and serving.

A model version carries ``mean`` and ``scale`` (six values each, channel order Ax..Gz in
canonical units), like a scikit-learn StandardScaler; both paths call :func:`standardize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wearmon.errors import IncompatibleModelError
from wearmon.signals.types import CHANNELS


@dataclass(frozen=True)
class Scaler:
    mean: np.ndarray  # float32, shape (6,)
    scale: np.ndarray  # float32, shape (6,)

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Scaler:
        try:
            mean = np.asarray(d["mean"], dtype=np.float32)
            scale = np.asarray(d["scale"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise IncompatibleModelError(f"scaler needs 'mean' and 'scale' lists: {exc}") from None
        if mean.shape != (len(CHANNELS),) or scale.shape != (len(CHANNELS),):
            raise IncompatibleModelError(
                f"scaler must have {len(CHANNELS)} values per field, got mean {mean.shape} "
                f"and scale {scale.shape}"
            )
        if not np.all(np.isfinite(mean)) or not np.all(scale > 0):
            raise IncompatibleModelError("scaler values must be finite with positive scale")
        return cls(mean=mean, scale=scale)

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        """Fit on windows (n, T, 6) or samples (n, 6)."""
        flat = np.asarray(x, dtype=np.float64).reshape(-1, len(CHANNELS))
        scale = flat.std(axis=0)
        scale[scale == 0] = 1.0
        return cls(mean=flat.mean(axis=0).astype(np.float32), scale=scale.astype(np.float32))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}


def standardize(x: np.ndarray, scaler: Scaler) -> np.ndarray:
    """(x - mean) / scale over the last axis, as float32."""
    return ((np.asarray(x, dtype=np.float32) - scaler.mean) / scaler.scale).astype(
        np.float32, copy=False
    )
