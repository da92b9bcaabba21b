"""One drift check: live window features against the champion's reference profile (pure).

The check (docs/drift.md, "What a check does") compares the live per-window features with
the reference profile of the serving model version in three ways, each scored against a
threshold that was
calibrated on normal between-person variation of the training data (monitoring.calibration),
so that a score of 1.0 is the decision threshold:

- a classifier two-sample test (C2ST): a logistic regression, cross-validated, tells the
  newest live windows from a sample of the reference; its out-of-fold AUC, as
  ``-ln(1 - AUC)``, is the statistic;
- a physics check: the gravity magnitude, the median ``acc_mag_mean`` of the quieter half of
  the newest windows (lowest ``acc_mag_std``), as ``|ln(median / g)|``: gravity is the same
  for every person, so a gain error shows there first;
- per feature, an Evidently stat test chosen per feature (:data:`FEATURE_METHODS`), reported
  as the share of features over their calibrated thresholds and the top features.

The population score is the larger of the C2ST and physics scores; per device, the physics
score on the device's own newest windows. Prediction drift (class mix against the training
class mix, low-confidence share) and data quality are reported beside, not in the decision.
Nothing here reads Redis or the registry: :func:`check` takes arrays, so a replay can drive it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wearmon.errors import MonitorError
from wearmon.signals.features import FEATURE_NAMES

log = logging.getLogger(__name__)

GRAVITY = 9.80665
#: Evidently's stat test per feature, and why (docs/drift.md, "Tests per feature"): the normed
#: Wasserstein distance for the continuous features (a distance in reference standard
#: deviations: it sees shifts and scale changes, and it does not shrink towards "drift" as
#: the sample grows the way a p-value does); the Jensen-Shannon distance of binned values for
#: the dominant frequencies, which sit on the 0.25 Hz grid of the spectrum.
FEATURE_METHODS: dict[str, str] = {
    n: ("jensenshannon" if n.endswith("_domfreq") else "wasserstein") for n in FEATURE_NAMES
}
#: Features always exported as a metric (the physics of the check), besides the top K.
ALWAYS_EXPORTED: tuple[str, ...] = ("acc_mag_mean", "gyro_mag_mean")


@dataclass(frozen=True)
class CheckConfig:
    #: the newest live windows the decision (C2ST, gravity) looks at; the calibration's
    #: check size (100 windows: 200 s of one device, 20 s of ten)
    c2st_live: int = 100
    #: reference windows in the C2ST sample
    c2st_ref: int = 2000
    #: folds of the C2ST's cross-validation (3: half the cost of 5, same decisions here)
    folds: int = 3
    #: inverse regularisation of the logistic regression
    c2st_c: float = 0.1
    #: newest windows of one device in its per-device check (60 s)
    device_windows: int = 30
    #: at most this many live windows enter the per-feature tests (the newest) ...
    max_live: int = 2000
    #: ... against at most this many reference windows (a fixed random sample)
    feature_ref: int = 5000
    seed: int = 0


def config_for(calibration: Mapping[str, Any], base: CheckConfig = CheckConfig()) -> CheckConfig:
    """The check configuration a calibration was made with (its statistics must be computed
    the same way to be compared with its thresholds); ``base`` keeps its live-side sizes."""
    made = dict(calibration.get("config") or {})
    keep = {"max_live": base.max_live, "feature_ref": base.feature_ref}
    known = {k: v for k, v in made.items() if k in CheckConfig.__dataclass_fields__}
    return CheckConfig(**{**asdict(base), **known, **keep})


@dataclass(frozen=True)
class LiveBatch:
    """Live windows of one check, oldest first (one row per window)."""

    features: np.ndarray  # float64 (n, len(names))
    devices: np.ndarray  # str (n,)
    labels: np.ndarray  # str (n,)
    confidence: np.ndarray  # float64 (n,), NaN where unknown
    window_start_ms: np.ndarray  # int64 (n,)
    model_versions: np.ndarray  # str (n,)
    names: tuple[str, ...] = tuple(FEATURE_NAMES)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, idx: np.ndarray) -> LiveBatch:
        return LiveBatch(
            self.features[idx],
            self.devices[idx],
            self.labels[idx],
            self.confidence[idx],
            self.window_start_ms[idx],
            self.model_versions[idx],
            self.names,
        )


@dataclass(frozen=True)
class Reference:
    """The reference profile of one model version, ready for checks."""

    version: str
    features: np.ndarray  # float64 (n, len(names)); at most cfg.feature_ref rows
    names: tuple[str, ...]
    calibration: Mapping[str, Any]
    class_mix: Mapping[str, float] = field(default_factory=dict)
    c2st_sample: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def build_reference(
    profile: Any,
    *,
    version: str,
    calibration: Mapping[str, Any],
    class_counts: Mapping[str, int] | None = None,
    cfg: CheckConfig = CheckConfig(),
) -> Reference:
    """A :class:`Reference` from a reference profile DataFrame (FEATURE_NAMES columns)."""
    missing = [n for n in FEATURE_NAMES if n not in profile.columns]
    if missing:
        raise MonitorError(f"reference profile of version {version} lacks features {missing[:3]}")
    x = profile[FEATURE_NAMES].to_numpy(dtype=np.float64)
    if len(x) < 2 * cfg.folds:
        raise MonitorError(f"reference profile of version {version} has only {len(x)} windows")
    total = sum((class_counts or {}).values())
    mix = {k: v / total for k, v in (class_counts or {}).items()} if total else {}
    rng = np.random.default_rng(cfg.seed)
    sample = x if len(x) <= cfg.c2st_ref else x[rng.choice(len(x), cfg.c2st_ref, replace=False)]
    if len(x) > cfg.feature_ref:
        x = x[np.sort(rng.choice(len(x), cfg.feature_ref, replace=False))]
    return Reference(version, x, tuple(FEATURE_NAMES), dict(calibration), mix, sample)


def align(features: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Live feature columns in FEATURE_NAMES order (the stream's ``feat:names`` order)."""
    if list(names) == FEATURE_NAMES:
        return np.asarray(features, dtype=np.float64)
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in FEATURE_NAMES if n not in index]
    if missing:
        raise MonitorError(f"feat:names lacks features {missing[:3]} of the reference profile")
    return np.asarray(features, dtype=np.float64)[:, [index[n] for n in FEATURE_NAMES]]


# --- statistics (the calibration computes the very same ones) ---------------------------


def c2st_stat(reference: np.ndarray, live: np.ndarray, cfg: CheckConfig) -> float:
    """``-ln(1 - AUC)`` of a cross-validated logistic regression telling live from reference
    (0.69 for no difference, larger when it can tell them apart)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    mu = reference.mean(axis=0)
    sd = reference.std(axis=0) + 1e-9
    x = np.clip((np.vstack([reference, live]) - mu) / sd, -10.0, 10.0)
    y = np.r_[np.zeros(len(reference)), np.ones(len(live))]
    folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
    clf = LogisticRegression(C=cfg.c2st_c, max_iter=200)
    p = cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, p))
    return -math.log(max(1.0 - auc, 1e-4))


def gravity_stat(features: np.ndarray) -> float:
    """``|ln(median acc_mag_mean / g)|`` over the quieter half of the windows."""
    mean = features[:, FEATURE_NAMES.index("acc_mag_mean")]
    std = features[:, FEATURE_NAMES.index("acc_mag_std")]
    k = max(3, len(mean) // 2)
    quiet = mean[np.argsort(std, kind="stable")[:k]]
    med = float(np.median(quiet))
    return abs(math.log(max(med, 1e-6) / GRAVITY))


def feature_stats(reference: np.ndarray, live: np.ndarray) -> dict[str, float]:
    """Evidently's stat test of each feature (:data:`FEATURE_METHODS`): name -> distance."""
    import pandas as pd
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    out: dict[str, float] = {}
    for i, name in enumerate(FEATURE_NAMES):
        test = get_registered_stattest(FEATURE_METHODS[name], ColumnType.Numerical)
        res = test(pd.Series(reference[:, i]), pd.Series(live[:, i]), ColumnType.Numerical, None)
        out[name] = float(res.drift_score)
    return out


def device_stats(devices: np.ndarray, features: np.ndarray, n: int) -> dict[str, float]:
    """Per device with at least ``n`` windows: :func:`gravity_stat` of its newest ``n``."""
    out: dict[str, float] = {}
    for dev in np.unique(devices):
        idx = np.flatnonzero(devices == dev)
        if len(idx) >= n:
            out[str(dev)] = gravity_stat(features[idx[-n:]])
    return out


# --- the check --------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    at_ms: int
    n_windows: int
    model_version: str
    #: calibrated population score: max of the C2ST and physics scores (1.0 = threshold)
    score: float
    drifted: bool
    c2st_score: float
    gravity_score: float
    #: share of features over their calibrated thresholds (0..1)
    share: float
    feature_scores: dict[str, float]
    devices_checked: int
    drifted_devices: int
    device_scores: dict[str, float]
    class_mix: float
    low_confidence: float

    def top_features(self, k: int = 5) -> list[tuple[str, float]]:
        ranked = sorted(self.feature_scores.items(), key=lambda kv: -kv[1])
        return [(n, round(v, 3)) for n, v in ranked[:k]]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly fields (``drift:latest``, ``drift:hist``)."""
        import json

        worst = sorted(self.device_scores.items(), key=lambda kv: -kv[1])[:5]
        return {
            "ts_ms": self.at_ms,
            "score": round(self.score, 4),
            "share": round(self.share, 4),
            "drifted": int(self.drifted),
            "n_windows": self.n_windows,
            "model_version": self.model_version,
            "c2st_score": round(self.c2st_score, 4),
            "gravity_score": round(self.gravity_score, 4),
            "devices_checked": self.devices_checked,
            "drifted_devices": self.drifted_devices,
            "class_mix": round(self.class_mix, 4),
            "low_confidence": _r(self.low_confidence),
            "top": json.dumps(self.top_features()),
            "worst_devices": json.dumps([(d, round(v, 3)) for d, v in worst]),
        }


def check(
    batch: LiveBatch, ref: Reference, at_ms: int, cfg: CheckConfig = CheckConfig()
) -> DriftResult:
    """Score one batch of live windows against a reference (see the module doc)."""
    if len(batch) == 0:
        raise MonitorError("a drift check needs at least one live window")
    cal = ref.calibration
    thr = cal["thresholds"]
    live = batch.features[-cfg.max_live :]
    # the decision looks at the newest windows, as many as the calibration's checks held:
    # the same statistic at the same size as calibrated, and the quickest to see an onset
    newest = live[-cfg.c2st_live :]
    # a check of several devices mixes people: it has a threshold of its own (calibrated)
    n_devices = len(np.unique(batch.devices[-cfg.max_live :][-cfg.c2st_live :]))
    c2st = c2st_stat(ref.c2st_sample, newest, cfg) / c2st_threshold(thr, n_devices)
    grav = gravity_stat(newest) / float(thr["gravity"])
    raw = feature_stats(ref.features, live)
    fthr = thr["features"]
    fscore = {n: v / float(fthr[n]) for n, v in raw.items()}
    dev = {
        d: v / float(thr["device"])
        for d, v in device_stats(batch.devices, batch.features, cfg.device_windows).items()
    }
    score = max(c2st, grav)
    versions, counts = np.unique(batch.model_versions, return_counts=True)
    return DriftResult(
        at_ms=at_ms,
        n_windows=len(batch),
        model_version=str(versions[counts.argmax()]),
        score=score,
        drifted=score > 1.0,
        c2st_score=c2st,
        gravity_score=grav,
        share=sum(v > 1.0 for v in fscore.values()) / len(fscore),
        feature_scores=fscore,
        devices_checked=len(dev),
        drifted_devices=sum(v > 1.0 for v in dev.values()),
        device_scores=dev,
        class_mix=class_mix_distance(batch.labels, ref.class_mix),
        low_confidence=low_confidence_share(batch.confidence),
    )


def c2st_threshold(thresholds: Mapping[str, Any], devices: int) -> float:
    """The C2ST threshold of a check whose windows come from ``devices`` devices: the
    calibrated one of the largest mixed size not above it, else the one-person threshold."""
    by = thresholds.get("c2st_devices") or {}
    sizes = sorted(int(k) for k in by if int(k) <= devices)
    return float(by[str(sizes[-1])]) if sizes else float(thresholds["c2st"])


def class_mix_distance(labels: np.ndarray, mix: Mapping[str, float]) -> float:
    """Total variation distance between the live class mix and the training mix (0..1)."""
    if not mix or len(labels) == 0:
        return float("nan")
    names, counts = np.unique(labels, return_counts=True)
    live = dict(zip((str(n) for n in names), counts / counts.sum(), strict=True))
    keys = set(live) | set(mix)
    return 0.5 * sum(abs(live.get(k, 0.0) - float(mix.get(k, 0.0))) for k in keys)


def low_confidence_share(confidence: np.ndarray) -> float:
    """Share of live windows predicted with confidence below 0.5 (NaN if none known)."""
    c = confidence[np.isfinite(confidence)]
    return float((c < 0.5).mean()) if len(c) else float("nan")


def _r(v: float) -> float | str:
    return "nan" if not math.isfinite(v) else round(v, 4)
