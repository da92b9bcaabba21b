"""Prometheus metrics of ``wearmon monitor`` (names fixed in the interfaces; prefix
``wearmon_monitor_``), served on ``settings.metrics.monitor_port``."""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitoring.drift import ALWAYS_EXPORTED, DriftResult
from monitoring.policy import STATES, Transition

#: per-feature gauges: the top K features of the latest check plus ALWAYS_EXPORTED
TOP_K = 8
CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class MonitorMetrics:
    """All metrics of one monitor; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        p = "wearmon_monitor_"
        self.checks = Counter(p + "checks", "Drift checks by result", ["result"], registry=r)
        self.check_seconds = Histogram(
            p + "check_seconds", "Duration of one drift check", buckets=CHECK_BUCKETS, registry=r
        )
        self.score = Gauge(
            p + "drift_score", "Calibrated drift score (1.0 = decision threshold)", ["scope"],
            registry=r,
        )  # fmt: skip
        self.share = Gauge(
            p + "drift_share", "Share of features over their calibrated thresholds", ["scope"],
            registry=r,
        )  # fmt: skip
        self.drifted_devices = Gauge(
            p + "drifted_devices", "Devices over the per-device threshold", registry=r
        )
        self.feature = Gauge(
            p + "feature_drift", "Calibrated per-feature score (top features)", ["feature"],
            registry=r,
        )  # fmt: skip
        self.prediction = Gauge(
            p + "prediction_drift", "Prediction drift (class mix TVD, low-confidence share)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.quality = Gauge(
            p + "data_quality", "Skipped-window share and dead-letter rate of the stream",
            ["kind"], registry=r,
        )  # fmt: skip
        self.policy_state = Gauge(
            p + "policy_state", "1 for the trigger policy's current state", ["state"], registry=r
        )
        self.transitions = Counter(
            p + "policy_transitions", "Trigger policy transitions", ["from_state", "to_state"],
            registry=r,
        )  # fmt: skip
        self.retrainings = Counter(
            p + "retrainings", "Retrainings started and their results", ["result"], registry=r
        )
        self.windows = Gauge(p + "windows_checked", "Live windows in the last check", registry=r)
        self.last_check = Gauge(
            p + "last_check_timestamp_seconds",
            "Wall-clock time of the last check (Unix seconds)",
            registry=r,
        )
        self.champion = Gauge(
            p + "champion_info", "The model version checked against", ["model_version"],
            registry=r,
        )  # fmt: skip
        for kind in ("class_mix", "confidence"):
            self.prediction.labels(kind=kind)
        for kind in ("skipped_share", "deadletter_rate"):
            self.quality.labels(kind=kind)
        for result in ("ok", "drift", "skipped", "error"):
            self.checks.labels(result=result)
        for result in ("started", "promoted", "refused", "failed"):
            self.retrainings.labels(result=result)

    def observe_check(self, res: DriftResult, at_s: float) -> None:
        self.checks.labels(result="drift" if res.drifted else "ok").inc()
        self.score.labels(scope="population").set(res.score)
        self.share.labels(scope="population").set(res.share)
        self.drifted_devices.set(res.drifted_devices)
        self.windows.set(res.n_windows)
        self.last_check.set(at_s)
        self.prediction.labels(kind="class_mix").set(res.class_mix)
        self.prediction.labels(kind="confidence").set(res.low_confidence)
        self.feature.clear()  # a bounded set: the top K of this check, plus the fixed ones
        names = [n for n, _ in res.top_features(TOP_K)] + list(ALWAYS_EXPORTED)
        for n in dict.fromkeys(names):
            self.feature.labels(feature=n).set(res.feature_scores[n])
        self.set_champion(res.model_version)

    def set_champion(self, version: str) -> None:
        self.champion.clear()
        self.champion.labels(model_version=version).set(1)

    def set_quality(self, quality: Mapping[str, float]) -> None:
        for kind, v in quality.items():
            self.quality.labels(kind=kind).set(v if math.isfinite(v) else math.nan)

    def set_state(self, state: str) -> None:
        for s in STATES:
            self.policy_state.labels(state=s).set(1.0 if s == state else 0.0)

    def observe_transitions(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self.transitions.labels(from_state=t.from_state, to_state=t.to_state).inc()
