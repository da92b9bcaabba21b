"""Pure parts of the monitor service: data quality from the stream workers' real metrics
pages, the bounded per-feature metrics, the check's line in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import generate_latest, start_http_server

from monitoring.drift import ALWAYS_EXPORTED, DriftResult
from monitoring.metrics import TOP_K, MonitorMetrics
from monitoring.policy import Transition
from monitoring.service import CheckOutcome, describe, quality_between, scrape_counters
from stream_processor.metrics import StreamMetrics
from wearmon.signals.features import FEATURE_NAMES
from wearmon.stack import free_port


def _result(**kw: object) -> DriftResult:
    scores = {n: float(i) / 10 for i, n in enumerate(FEATURE_NAMES)}
    base = dict(
        at_ms=1_700_000_000_000, n_windows=150, model_version="4", score=1.7, drifted=True,
        c2st_score=1.7, gravity_score=0.3, share=0.2, feature_scores=scores,
        devices_checked=3, drifted_devices=1, device_scores={"a": 1.2, "b": 0.1, "c": 0.2},
        class_mix=0.4, low_confidence=float("nan"),
    )  # fmt: skip
    base.update(kw)
    return DriftResult(**base)  # type: ignore[arg-type]


def test_quality_from_two_scrapes_of_a_real_worker_metrics_page() -> None:
    sm = StreamMetrics()
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=sm.registry)
    urls = [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{free_port()}/metrics"]
    first = scrape_counters(urls)  # the second page does not answer: skipped
    assert first is not None and first["emitted"] == 0
    sm.windows_emitted.inc(90)
    sm.windows_skipped.labels(reason="gap").inc(10)
    sm.messages_in.inc(1000)
    sm.deadletters.labels(reason="schema").inc(5)
    q = quality_between(first, scrape_counters(urls))
    assert q == {"skipped_share": pytest.approx(0.1), "deadletter_rate": pytest.approx(0.005)}


def test_quality_is_nan_without_a_page_or_traffic() -> None:
    assert scrape_counters([f"http://127.0.0.1:{free_port()}/metrics"]) is None
    q = quality_between(None, {"emitted": 1.0, "skipped": 0.0, "messages": 1.0, "deadletters": 0})
    assert all(math.isnan(v) for v in q.values())
    same = {"emitted": 5.0, "skipped": 1.0, "messages": 9.0, "deadletters": 0.0}
    assert all(math.isnan(v) for v in quality_between(same, same).values())


def test_per_feature_metrics_stay_a_bounded_set() -> None:
    m = MonitorMetrics()
    m.observe_check(_result(), 1.0)
    rev = {n: float(len(FEATURE_NAMES) - i) for i, n in enumerate(FEATURE_NAMES)}
    m.observe_check(_result(feature_scores=rev, model_version="5"), 2.0)
    text = generate_latest(m.registry).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("wearmon_monitor_feature_drift{")]
    assert len(series) <= TOP_K + len(ALWAYS_EXPORTED) <= 10
    assert f'feature="{FEATURE_NAMES[0]}"' in text  # the new top, the old top gone
    assert f'feature="{FEATURE_NAMES[-1]}"' not in text
    assert all(f'feature="{n}"' in text for n in ALWAYS_EXPORTED)
    assert 'champion_info{model_version="5"} 1.0' in text and 'version="4"' not in text
    assert 'wearmon_monitor_checks_total{result="drift"} 2.0' in text
    assert "device" not in "".join(ln for ln in text.splitlines() if not ln.startswith("#")
                                   and "drifted_devices" not in ln)  # fmt: skip


def test_a_check_in_words() -> None:
    t = Transition("ok", "suspect", "1 of the last 1 checks drifted", "drift-1", 1)
    line = describe(CheckOutcome(1, _result(), "", [t]))
    assert line.startswith("DRIFT: score 1.70 (classifier 1.70, gravity 0.30")
    assert "150 windows of model 4" in line and "1 of 3 devices drifted" in line
    assert line.endswith("policy ok -> suspect: 1 of the last 1 checks drifted")
    assert describe(CheckOutcome(1, None, "3 new windows (< 100)")) == (
        "check skipped: 3 new windows (< 100)"
    )
    assert np.isnan(_result().low_confidence)
