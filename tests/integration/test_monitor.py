"""The monitor against the real Redis: live windows in ``feat:live`` (seglearn subjects the
reference never saw), checks written to ``drift:*``, the policy moving on injected drift, its
state and cursor resumed by a restarted monitor, Evidently reports on state changes, and a
real ``wearmon model retrain`` process started on DRIFT and fed back (RETRAINING -> COOLDOWN).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from monitoring import keys
from monitoring.calibration import calibrate
from monitoring.drift import Reference, build_reference
from monitoring.metrics import MonitorMetrics
from monitoring.policy import COOLDOWN, DRIFT, OK, RETRAINING, SUSPECT, PolicyStore
from monitoring.service import Monitor, describe, status
from tests.unit.dashboards.test_push import grafana  # noqa: F401 (the fixture)
from wearmon.settings import Settings
from wearmon.signals.features import FEATURE_NAMES, features_frame, window_features

pytestmark = pytest.mark.integration

LIVE = ("9", "10")


@pytest.fixture(scope="module")
def seglearn() -> Any:
    from trainer.datasets import load_dataset

    ds = load_dataset("seglearn")
    order = np.lexsort((ds.start_ms, ds.recording))
    return ds.x[order].astype(np.float64), ds.groups[order].astype(str)


class FixedReference:
    """The reference of one version built from real windows (no registry needed)."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref

    def champion(self) -> str:
        return self.ref.version

    def get(self, version: str) -> Reference:
        assert version == self.ref.version
        return self.ref


@pytest.fixture(scope="module")
def reference(seglearn: Any) -> FixedReference:
    x, groups = seglearn
    train = ~np.isin(groups, LIVE)
    profile = features_frame(x[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = calibrate(profile, groups[train])
    return FixedReference(build_reference(profile, version="3", calibration=cal))


def _push(client: Any, feats: np.ndarray, device: str, t0_ms: int, version: str = "3") -> None:
    """Live windows as the stream processor writes them to feat:live."""
    client.set(keys.FEATURE_NAMES_KEY, json.dumps(FEATURE_NAMES))
    # one MULTI/EXEC: a monitor checking every second sees all of them or none (a check in
    # the middle of a plain pipeline read part of them)
    pipe = client.pipeline(transaction=True)
    for i, row in enumerate(np.round(feats, 6).tolist()):
        pipe.xadd(
            keys.FEATURES_KEY,
            {
                "device": device,
                "window_start_ms": t0_ms + 2000 * i,
                "model_version": version,
                "label": "ROW",
                "confidence": "0.93",
                "f": json.dumps(row),
            },
        )
    pipe.execute()


def _live(seglearn: Any, subject: str, n: int, gain: float = 1.0) -> np.ndarray:
    x, groups = seglearn
    return window_features(x[groups == subject][:n] * gain)


def _settings(stack: Settings, tmp_path: Path, **monitor: Any) -> Settings:
    # no ground truth here: DRIFT does not wait for labelled windows unless a test asks
    base = {"min_windows": 60, "n_of_m": (2, 3), "min_labelled": 0}
    m = stack.monitor.model_copy(update={**base, **monitor})
    return stack.model_copy(update={"data_dir": tmp_path / "data", "monitor": m})


def _clean(client: Any) -> None:
    client.delete(
        keys.FEATURES_KEY, keys.MONITOR_CURSOR, keys.POLICY_STATE, keys.POLICY_LOG,
        keys.DRIFT_LATEST, keys.DRIFT_HIST,
    )  # fmt: skip


def test_checks_move_the_policy_and_a_restart_resumes_it(
    stack: Settings, redis_client: Any, tmp_path: Path, seglearn: Any, reference: FixedReference
) -> None:
    _clean(redis_client)
    s = _settings(stack, tmp_path, retrain=False, reports_keep=2, cooldown_s=3600)
    metrics = MonitorMetrics()
    mon = Monitor(s, redis_client, metrics, references=reference)  # type: ignore[arg-type]
    assert mon.state.state == OK

    out = mon.check_once()  # nothing live yet
    assert out.result is None and "0 new windows" in out.skipped

    _push(redis_client, _live(seglearn, "9", 100), "dev-9", 1_000_000)
    out = mon.check_once()
    assert out.result is not None and not out.result.drifted, describe(out)
    latest = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.DRIFT_LATEST).items()}
    assert latest["drifted"] == "0" and latest["n_windows"] == "100"
    assert latest["model_version"] == "3" and latest["state"] == OK
    assert json.loads(latest["top"])  # top features with their scores

    out = mon.check_once()  # the cursor moved: the same windows are not checked twice
    assert out.result is None and "0 new windows" in out.skipped

    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-10", 2_000_000)
    out = mon.check_once()
    assert out.result is not None and out.result.drifted, describe(out)
    assert [t.to_state for t in out.transitions] == [SUSPECT]
    assert out.report is not None  # a state change: a report, written off the check's thread
    mon.flush_reports()
    assert out.report.is_file()
    trigger = mon.state.trigger_id
    assert trigger

    # a restart: a new monitor on the same Redis resumes the state and the cursor
    mon2 = Monitor(s, redis_client, MonitorMetrics(), references=reference)  # type: ignore[arg-type]
    assert mon2.state == mon.state and mon2.state.state == SUSPECT
    assert mon2.check_once().result is None  # nothing new since the last check

    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-10b", 3_000_000)
    out = mon2.check_once()
    assert [t.to_state for t in out.transitions] == [DRIFT, RETRAINING]
    assert {t.trigger_id for t in out.transitions} == {trigger}
    # retraining is off here: the monitor feeds back "failed" and cools down
    st = mon2.poll_retraining()
    assert st is not None and st.state.state == COOLDOWN
    assert "retraining is off" in st.transitions[0].reason

    log = PolicyStore(redis_client).log(10)
    assert [(t.from_state, t.to_state) for t in reversed(log)] == [
        (OK, SUSPECT), (SUSPECT, DRIFT), (DRIFT, RETRAINING), (RETRAINING, COOLDOWN),
    ]  # fmt: skip
    assert redis_client.xlen(keys.DRIFT_HIST) == 3
    mon2.flush_reports()  # written by its own thread
    reports = sorted((tmp_path / "data" / "monitor" / "reports").glob("drift-*.html"))
    assert len(reports) == 2  # bounded: reports_keep

    text = generate_latest(mon2.metrics.registry).decode()
    assert 'wearmon_monitor_policy_state{state="cooldown"} 1.0' in text
    assert 'wearmon_monitor_policy_state{state="ok"} 0.0' in text
    assert 'wearmon_monitor_retrainings_total{result="failed"} 1.0' in text
    assert 'wearmon_monitor_champion_info{model_version="3"} 1.0' in text
    assert 'wearmon_monitor_feature_drift{feature="acc_mag_mean"}' in text
    text1 = generate_latest(metrics.registry).decode()
    assert 'wearmon_monitor_checks_total{result="ok"} 1.0' in text1
    assert 'wearmon_monitor_checks_total{result="drift"} 1.0' in text1
    assert 'wearmon_monitor_checks_total{result="skipped"} 2.0' in text1

    words = "\n".join(status(s, redis_client))
    assert "policy: COOLDOWN" in words and "retraining -> cooldown" in words
    assert "DRIFT  score" in words


@pytest.fixture(scope="module")
def champion(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with a freshly trained tiny champion (its reference profile and calibration
    stored by the trainer) in a data dir of their own."""
    from trainer import registry
    from trainer.model import ModelConfig
    from trainer.train import TrainOptions, train

    data = tmp_path_factory.mktemp("monitor-champion")
    s = stack.model_copy(update={"data_dir": data, "model_name": "wm-monitor-loop"})
    tiny = {"conv_filters": [4], "kernel_size": 3, "pool_size": 4, "lstm_units": 4,
            "dense_units": 8, "epochs": 1, "batch_size": 64, "patience": 1}  # fmt: skip
    cfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **tiny})
    res = train(s, TrainOptions(config=cfg, train_hop=100, max_windows_per_subject=60))
    assert registry.alias_version(s) == res.version
    assert registry.read_calibration(s, res.version) is not None
    return s


@pytest.mark.slow
def test_drift_starts_a_real_niced_retraining_and_feeds_its_result_back(
    champion: Settings, redis_client: Any, seglearn: Any
) -> None:
    from trainer import registry

    _clean(redis_client)
    m = champion.monitor.model_copy(
        update={
            "n_of_m": (1, 1),
            "min_windows": 50,
            "retrain_args": ("--quick",),
            "min_labelled": 0,
        }
    )
    s = champion.model_copy(update={"monitor": m})
    version = str(registry.alias_version(s))
    mon = Monitor(s, redis_client, MonitorMetrics())
    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-x", 5_000_000, version)
    out = mon.check_once()
    assert [t.to_state for t in out.transitions] == [DRIFT, RETRAINING], describe(out)
    assert mon.proc is not None
    deadline = time.monotonic() + 300
    while mon.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    st = mon.poll_retraining()
    assert st is not None and st.state.state == COOLDOWN
    reason = st.transitions[0].reason
    assert reason.startswith("retraining refused: no labelled new data"), reason
    tid = out.transitions[0].trigger_id
    h = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.retrain_key(tid)).items()}
    assert h["status"] == "refused"
    logfile = Path(s.data_dir) / "monitor" / "retrain" / f"{tid}.log"
    assert "refused" in logfile.read_text()


def test_the_service_process_checks_serves_metrics_and_reports_status(
    champion: Settings, redis_client: Any, seglearn: Any, subprocess_env: dict[str, str]
) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    from trainer import registry

    _clean(redis_client)
    env = dict(subprocess_env)
    env.update({
        "WEARMON_DATA_DIR": str(champion.data_dir), "WEARMON_MODEL_NAME": champion.model_name,
        "WEARMON_MONITOR__INTERVAL_S": "1", "WEARMON_MONITOR__MIN_WINDOWS": "50",
        "WEARMON_MONITOR__RETRAIN": "false",
    })  # fmt: skip
    version = str(registry.alias_version(champion))
    cmd = [sys.executable, "-m", "wearmon.cli.main", "monitor"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _push(redis_client, _live(seglearn, "9", 100), "dev-9", 7_000_000, version)
        deadline = time.monotonic() + 120
        while not redis_client.exists(keys.DRIFT_LATEST) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.5)
        latest = {
            k.decode(): v.decode() for k, v in redis_client.hgetall(keys.DRIFT_LATEST).items()
        }
        assert latest["n_windows"] == "100" and latest["model_version"] == version
        url = f"http://127.0.0.1:{champion.metrics.monitor_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "wearmon_monitor_windows_checked 100.0" in text
        assert f'wearmon_monitor_champion_info{{model_version="{version}"}} 1.0' in text
        assert 'wearmon_monitor_checks_total{result="ok"}' in text
        assert "wearmon_monitor_check_seconds_count 1.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)  # how systemd and compose stop a service
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert "monitor stopped" in err, "SIGTERM did not unwind the monitor"
    words = subprocess.run(
        [*cmd, "status"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "policy: OK" in words and "last 1 checks:" in words and "ok     score" in words


def test_drift_waits_for_labelled_windows_then_retrains_from_the_onset(
    stack: Settings, redis_client: Any, tmp_path: Path, seglearn: Any, reference: FixedReference
) -> None:
    """The labelled count is the stream's own ``acc:live`` totals; the retraining gets the
    onset (the oldest window of the first drifted check) as ``--since-ms``."""
    from stream_processor.sinks import accuracy_key

    _clean(redis_client)
    for k in redis_client.scan_iter(match=accuracy_key("*")):  # other tests' scored windows
        redis_client.delete(k)
    redis_client.hset(accuracy_key("dev-a"), mapping={"3:total": 40, "3:correct": 30})
    s = _settings(stack, tmp_path, retrain=False, min_labelled=100, label_wait_s=3600)
    mon = Monitor(s, redis_client, MonitorMetrics(), references=reference)  # type: ignore[arg-type]
    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-a", 5_000_000)
    assert [t.to_state for t in mon.check_once().transitions] == [SUSPECT]
    assert (mon.state.onset_ms, mon.state.labelled_at_onset) == (5_000_000, 40)
    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-b", 6_000_000)
    out = mon.check_once()
    assert [t.to_state for t in out.transitions] == [DRIFT]  # 0 labelled since: it waits
    words = "\n".join(status(s, redis_client))
    assert "labelled windows since the onset: 0 of 100" in words, words
    redis_client.hincrby(accuracy_key("dev-a"), "3:total", 60)  # the stream scored 60 more
    redis_client.hincrby(accuracy_key("dev-b"), "4:total", 40)  # ... 40 of another version
    _push(redis_client, _live(seglearn, "10", 100, gain=1.5), "dev-c", 7_000_000)
    out = mon.check_once()
    assert [t.to_state for t in out.transitions] == [RETRAINING], describe(out)
    assert "100 labelled windows since the onset" in out.transitions[0].reason
    assert mon.retrain_command(mon.state.trigger_id)[-2:] == ["--since-ms", "5000000"]
    redis_client.delete(accuracy_key("dev-a"), accuracy_key("dev-b"))


def test_undecodable_live_entries_are_skipped_and_counted(redis_client: Any, seglearn: Any) -> None:
    from monitoring.service import read_live

    _clean(redis_client)
    good = _live(seglearn, "9", 3)
    _push(redis_client, good[:2], "dev-a", 1_000)
    redis_client.xadd(keys.FEATURES_KEY, {"device": "dev-b", "f": "not json"})
    redis_client.xadd(keys.FEATURES_KEY, {"device": "dev-b", "f": json.dumps([1.0] * 3)})
    nan = [float("nan")] * len(FEATURE_NAMES)
    redis_client.xadd(keys.FEATURES_KEY, {"device": "dev-b", "f": json.dumps(nan)})
    _push(redis_client, good[2:], "dev-c", 9_000)
    out = read_live(redis_client, None, 100)
    assert out.bad == 3 and out.batch is not None and len(out.batch) == 3
    assert out.batch.devices.tolist() == ["dev-a", "dev-a", "dev-c"]  # oldest first
    assert np.allclose(out.batch.features, np.round(good, 6))
    assert out.batch.confidence.tolist() == [0.93] * 3
    newest = out.newest_id
    assert read_live(redis_client, newest, 100).batch is None  # nothing after the cursor
    assert len(read_live(redis_client, None, 2).batch or []) == 1  # the newest 2: one bad


def test_transitions_are_grafana_annotations_and_an_unreachable_grafana_is_only_logged(
    stack: Settings,
    redis_client: Any,
    tmp_path: Path,
    grafana: str,  # noqa: F811
) -> None:
    from monitoring.policy import Check
    from tests.unit.dashboards.test_push import FakeGrafana
    from wearmon.stack import free_port

    _clean(redis_client)
    s = _settings(stack, tmp_path).model_copy(update={"grafana": stack.grafana.model_copy(
        update={"url": grafana, "timeout_s": 2.0})})  # fmt: skip
    mon = Monitor(s, redis_client, MonitorMetrics())
    mon.feed(Check(1_000, True, 500, 3.0))
    ((method, path, body, _),) = FakeGrafana.requests
    assert (method, path) == ("POST", "/api/annotations") and body["time"] == 1_000
    assert body["tags"] == ["wearmon", "drift", "suspect"]
    assert body["text"].startswith("policy ok -> suspect: 1 of the last 1 checks drifted")
    assert body["text"].endswith("[drift-1000]")
    dead = s.model_copy(update={"grafana": s.grafana.model_copy(
        update={"url": f"http://127.0.0.1:{free_port()}"})})  # fmt: skip
    mon2 = Monitor(dead, redis_client, MonitorMetrics())
    step = mon2.feed(Check(2_000, True, 500, 3.0))  # suspect -> drift -> retraining
    assert [t.to_state for t in step.transitions] == [DRIFT, RETRAINING]
    assert mon2.state.state == RETRAINING  # the policy moved, the annotation was only logged


def test_a_retraining_past_its_timeout_is_stopped_and_cools_down(
    stack: Settings, redis_client: Any, tmp_path: Path
) -> None:
    import subprocess

    from monitoring.policy import Check, Tick

    _clean(redis_client)
    s = _settings(stack, tmp_path, n_of_m=(1, 1), retrain=False, retrain_timeout_s=5.0)
    mon = Monitor(s, redis_client, MonitorMetrics())
    mon.feed(Check(1_000, True, 500, 3.0))
    assert mon.state.state == RETRAINING
    # a retraining that hangs: a real process in its own group, as wearmon.processes starts it
    mon.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    assert mon.poll_retraining() is None  # still running: nothing to feed
    mon.feed(Tick(3_000))
    assert mon.state.state == RETRAINING and mon.proc.poll() is None
    proc = mon.proc
    step = mon.feed(Tick(6_000))
    assert [t.to_state for t in step.transitions] == [COOLDOWN]
    assert "timed out after 5 s" in step.transitions[0].reason
    assert mon.proc is None and proc.poll() is not None  # stopped
    assert mon.state.last_result == "failed"
    h = {k.decode(): v.decode() for k, v in redis_client.hgetall(
        keys.retrain_key(step.transitions[0].trigger_id)).items()}  # fmt: skip
    assert h["status"] == "failed" and "timed out after 5 s" in h["reason"]  # not "running"
    # a monitor that stops during a retraining marks it failed too
    mon.feed(Tick(10**9))  # cooldown over
    mon.feed(Check(10**9 + 1, True, 500, 3.0))
    assert mon.state.state == RETRAINING
    mon.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    tid = mon.state.trigger_id
    mon.stop_retraining()
    h = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.retrain_key(tid)).items()}
    assert h["status"] == "failed" and h["reason"] == "the monitor stopped"


def test_the_monitor_reads_what_the_stream_sink_writes(
    stack: Settings, redis_client: Any, seglearn: Any
) -> None:
    import uuid

    from monitoring.service import read_live
    from stream_processor.sinks import RedisSink
    from wearmon.schemas import Prediction

    _clean(redis_client)
    sink = RedisSink.from_settings(stack)
    feats = _live(seglearn, "9", 3)
    dev = f"dev-{uuid.uuid4().hex[:8]}"
    T0 = 1_700_000_000_000
    preds = [
        Prediction(
            device=dev,
            window_start_ms=T0 + 2000 * i,
            window_end_ms=T0 + 2000 * i + 4000,
            label="ROW",
            confidence=c,
            probs=[c, 1 - c],
            model_version="5",
            processed_ms=10_000,
        )
        for i, c in enumerate((0.9, 0.4, 0.75))
    ]
    sink.write(preds, feats)
    out = read_live(redis_client, None, 100)
    assert out.bad == 0 and out.batch is not None and len(out.batch) == 3
    assert out.batch.confidence.tolist() == [0.9, 0.4, 0.75]
    assert out.batch.model_versions.tolist() == ["5"] * 3
    assert out.batch.window_start_ms.tolist() == [T0, T0 + 2000, T0 + 4000]
    assert np.allclose(out.batch.features, np.round(feats, 6))
