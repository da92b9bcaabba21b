"""Ground truth on the labels topic is joined with the predictions: each window is scored once,
and the live accuracy equals the one computed from the batch path; whichever arrives first
(label or prediction). One worker also serves the checks of ``wearmon watch --once`` (device
rows shown) and the consumer-lag gauge (0 once everything is consumed)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stream_processor.sinks import accuracy_totals, history_key, labels_key, scored_key
from tests.integration.stream_support import (
    checkpointed,
    decided,
    device_windows,
    generated_recording,
    history,
    make_run,
    register_tiny,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.schemas import LabelSegment, encode
from wearmon.settings import Settings
from wearmon.signals.types import Recording
from wearmon.stack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    rec = generated_recording(
        tmp_path_factory.mktemp("rec"), subject=4, seed=4, exercises=3
    )  # with its labels sidecar
    assert rec.labels, "the generated recording carries labels"
    return rec


def _batch_truth(
    rec: Recording, settings: Settings, version: str, device: str
) -> tuple[dict[int, tuple[str, str]], int]:
    """{window_start_ms: (true label, batch-path prediction)} for every window the training
    rule labels (majority label covering >= label_purity of the window) of ``rec`` replayed
    as ``device``, and the number of windows (labelled or not) the stream decides for it."""
    from trainer.serving import load_version

    sig = settings.signal
    n_decided = int(decided(device_windows(rec, settings, device), rec, settings).sum())
    wins = device_windows(rec, settings, device, labels=rec.labels, purity=sig.label_purity)
    assert wins.labels is not None and len(wins) > 10
    predicted, _ = load_version(settings, version).predict(wins.x)
    truth = {
        int(s): (str(t), str(p))
        for s, t, p in zip(wins.start_ms.tolist(), wins.labels, predicted, strict=True)
    }
    return truth, n_decided


def _accuracy(redis_client, version: str) -> tuple[int, int]:
    return accuracy_totals(redis_client).get(version, (0, 0))


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _samples(text: str, name: str) -> dict[str, float]:
    """{label set ('' when none): value} of one metric."""
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = float(value)
    return out


def _send_labels(settings: Settings, device: str, rec: Recording) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all"})
    for span in rec.labels:
        seg = LabelSegment(
            device=device, start_ms=span.start_ms, end_ms=span.end_ms, label=span.label
        )
        p.produce(settings.kafka.labels_topic, key=device.encode(), value=encode(seg))
    assert p.flush(30) == 0


def test_labels_join_live_accuracy_watch_and_lag(
    stack: Settings, redis_client, subprocess_env, recording: Recording, tmp_path: Path
) -> None:
    from producers import ReplayConfig, device_ids, replay

    run = make_run(stack, subprocess_env)
    version = register_tiny(run.settings, tmp_path, seed=1)
    correct0, total0 = _accuracy(redis_client, version)  # acc:live is shared by all runs
    port = free_port()
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log, port)
    # A: samples and labels replayed together (labels mostly arrive before the predictions)
    # B: samples only; its labels are sent after all its predictions are written
    cfg = dict(speed=math.inf, timestamps="original", stagger_s=0.0)
    dev_a = device_ids(2, seed=11)
    dev_b = device_ids(1, seed=12)
    truths = {d: _batch_truth(recording, run.settings, version, d) for d in dev_a + dev_b}
    try:
        stats = replay(run.settings, [recording], ReplayConfig(devices=2, device_seed=11, **cfg))
        assert stats.ok, stats.summary()
        stats = replay(
            run.settings,
            [recording],
            ReplayConfig(devices=1, device_seed=12, send_labels=False, **cfg),
        )
        assert stats.ok, stats.summary()

        def predicted() -> bool:
            return all(redis_client.xlen(history_key(d)) >= truths[d][1] for d in dev_a + dev_b)

        wait_for(predicted, 120, [worker], log, "predictions of every device")
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
        scored_b_before = redis_client.hlen(scored_key(dev_b[0]))
        _send_labels(run.settings, dev_b[0], recording)

        # expected, from the batch path, over the windows the stream predicted
        exp_correct = exp_total = 0
        per_device: dict[str, int] = {}
        for d in dev_a + dev_b:
            truth = truths[d][0]
            rows = history(redis_client, d)
            starts = [int(r["window_start_ms"]) for r in rows]
            assert len(starts) == len(set(starts))
            scored = [r for r in rows if int(r["window_start_ms"]) in truth]
            for r in scored:
                true, batch_pred = truth[int(r["window_start_ms"])]
                assert r["label"] == batch_pred, "stream and batch path disagree"
                exp_correct += int(true == batch_pred)
            exp_total += len(scored)
            per_device[d] = len(scored)
        assert exp_total > 30

        wait_for(
            lambda: _accuracy(redis_client, version)[1] - total0 >= exp_total,
            60,
            [worker],
            log,
            "every labelled window scored",
        )
        time.sleep(3.0)  # a window scored twice would show up now; gauges refresh every 2 s
        correct, total = _accuracy(redis_client, version)
        text = _metrics(port)
        watch = subprocess.run(
            [sys.executable, "-m", "wearmon.cli.main", "watch", "--once"],
            env={**run.env, "WEARMON_METRICS__STREAM_PORT": str(port), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_worker(worker)

    # each window scored exactly once, accuracy = the batch path's
    assert (correct - correct0, total - total0) == (exp_correct, exp_total)
    for d, n in per_device.items():
        assert redis_client.hlen(scored_key(d)) == n, d
    assert scored_b_before == 0, "B's windows were scored before its labels arrived"
    assert redis_client.zcard(labels_key(dev_b[0])) == len(recording.labels)

    # the worker's metrics: live accuracy, scored predictions by result, consumer lag
    acc = _samples(text, "wearmon_stream_live_accuracy")
    assert acc[f'{{model_version="{version}"}}'] == pytest.approx(correct / total)
    scored = _samples(text, "wearmon_stream_scored_predictions_total")
    assert sum(scored.values()) == exp_total
    assert scored.get(f'{{model_version="{version}",result="correct"}}', 0.0) == exp_correct
    lag = _samples(text, "wearmon_stream_consumer_lag")
    assert 1 <= len(lag) <= run.settings.kafka.partitions, lag
    assert all(v == 0 for v in lag.values()), lag  # everything consumed
    labels_in = _samples(text, "wearmon_stream_labels_in_total")
    assert labels_in == {"": 3 * len(recording.labels)}  # 2 devices A by replay, B by hand

    # wearmon watch --once: a table with our devices' latest predictions and the rates
    assert watch.returncode == 0, watch.stderr
    for d in dev_a + dev_b:
        assert d in watch.stdout, watch.stdout
    assert version in watch.stdout and "pipeline rates" in watch.stdout
    assert "unreachable" not in watch.stdout
