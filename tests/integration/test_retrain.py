"""Retraining against the real Redis: retrain:{trigger_id} goes running -> final with the
versions, run and timestamps (TTL set); no labelled new data -> refused without training;
the CLI the monitor starts exits 0 (promoted/refused) or 1 (failed); labelled stream windows
(win:raw:{device} joined with label:seg:{device}) join the pool."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.keys import RETRAIN_TTL_S
from stream_processor.sinks import labels_key, raw_windows_key
from trainer import pool as P
from trainer import promotion, registry
from trainer.model import ModelConfig
from trainer.retrain import retrain, retrain_key
from trainer.train import TrainOptions, train
from wearmon.settings import Settings
from wearmon.signals.raw import encode_raw_window

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_stream_windows_of_other_tests(redis_client: Any) -> None:
    """The stream tests of the session keep raw windows of their labelled devices in the
    same Redis: the pool would find them. Each test here starts without any."""
    for key in list(redis_client.scan_iter(match=raw_windows_key("*"), count=1000)):
        redis_client.delete(key)


TINY = {
    "conv_filters": [4],
    "kernel_size": 3,
    "pool_size": 4,
    "lstm_units": 4,
    "dense_units": 8,
    "epochs": 1,
    "batch_size": 64,
    "patience": 1,
}


def _settings(stack: Settings, tmp_path: Path, name: str, **lifecycle: Any) -> Settings:
    """Isolated: own data dir and model, and a samples topic of its own (the pool reads the
    samples topic for labelled stream windows)."""
    s = stack.model_copy(update={"data_dir": tmp_path / "data", "model_name": name})
    topic = f"t.samples.{name}.{uuid.uuid4().hex[:6]}"
    return s.model_copy(
        update={
            "kafka": s.kafka.model_copy(update={"samples_topic": topic}),
            "lifecycle": s.lifecycle.model_copy(update=lifecycle),
        }
    )


def _hash(redis_client: Any, trigger: str) -> dict[str, str]:
    raw = redis_client.hgetall(retrain_key(trigger))
    return {k.decode(): v.decode() for k, v in raw.items()}


def _champion(settings: Settings) -> str:
    cfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **TINY})
    res = train(settings, TrainOptions(config=cfg, train_hop=100, max_windows_per_subject=20))
    assert res.version == "1" and registry.alias_version(settings, "champion") == "1"
    return res.version


def test_no_new_labels_is_refused_without_training(
    stack: Settings, redis_client: Any, tmp_path: Path
) -> None:
    s = _settings(stack, tmp_path, "wm-retrain-nolabels")
    champ = _champion(s)
    out = retrain(s, "trig-nolabels", quick=True, client=redis_client)
    assert out.status == "refused" and out.exit_code == 0
    assert out.reason.startswith("no labelled new data: 0 held-out new windows")
    h = _hash(redis_client, "trig-nolabels")
    assert h["status"] == "refused" and h["champion_version"] == champ
    assert h["challenger_version"] == "" and int(h["finished_ms"]) >= int(h["started_ms"]) > 0
    assert 0 < redis_client.ttl(retrain_key("trig-nolabels")) <= RETRAIN_TTL_S
    assert registry.latest_version(s) == champ  # nothing was trained
    rec = promotion.read_decisions(s)[0]  # but the refusal is recorded, with its trigger
    assert rec["trigger_id"] == "trig-nolabels" and rec["decision"] == "refused"
    assert rec["version"] == "" and rec["params"]["pool.new_holdout"].startswith("0 windows")


@pytest.mark.slow
def test_retrain_from_incoming_recording_records_lineage(
    stack: Settings, redis_client: Any, tmp_path: Path
) -> None:
    from wearmon.signals.recording_gen import make_recording

    s = _settings(stack, tmp_path, "wm-retrain-incoming")
    s = s.model_copy(update={"lifecycle": s.lifecycle.model_copy(update={"min_new_windows": 5})})
    champ = _champion(s)
    make_recording(P.incoming_dir(s) / "carol", subject=7, seed=2, max_exercises=4)
    out = retrain(s, "trig-incoming", quick=True, client=redis_client, config_overrides=TINY)
    assert out.status in ("promoted", "refused"), out.reason
    assert out.challenger_version == "2" and out.champion_version == champ and out.run_id
    h = _hash(redis_client, "trig-incoming")
    assert h["status"] == out.status and h["reason"] == out.reason
    assert h["challenger_version"] == "2" and h["run_id"] == out.run_id
    rec = promotion.read_decisions(s, "2")[0]
    assert rec["trigger_id"] == "trig-incoming" and rec["decision"] == out.status
    assert rec["params"]["train_run_id"] == out.run_id
    assert "carol" in rec["params"]["pool.incoming"] and "sha256=" in rec["params"]["pool.incoming"]
    assert int(rec["params"]["new.n"]) >= 5
    meta = registry.read_metadata(s, "2")
    assert meta["init_from"].endswith("/1")  # fine-tuned from the champion
    # the held-out base subjects are the champion's test subjects, never trained on
    champ_test = registry.read_metadata(s, champ)["split"]["test"]
    assert meta["split"]["test"] == champ_test
    assert not set(champ_test) & set(meta["split"]["train"])
    assert any(t.startswith("new:") for t in meta["split"]["train"])
    profile = registry.read_reference_profile(s, "2")
    assert profile is not None and "subject" in profile.columns
    cal = registry.read_calibration(s, "2")
    assert isinstance(cal, dict) and cal  # calibrated on the challenger's training subjects


def test_cli_exit_codes_for_refused_and_failed(
    stack: Settings, redis_client: Any, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(subprocess_env)
    env["WEARMON_DATA_DIR"] = str(tmp_path / "data")
    env["WEARMON_MODEL_NAME"] = "wm-retrain-cli"
    env["WEARMON_KAFKA__SAMPLES_TOPIC"] = f"t.samples.cli.{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, "-m", "wearmon.cli.main", "model", "retrain", "--quick"]
    ok = subprocess.run(
        [*cmd, "--trigger-id", "cli-ok"], env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "retraining cli-ok: refused: no labelled new data" in ok.stdout
    assert _hash(redis_client, "cli-ok")["status"] == "refused"
    env["WEARMON_LIFECYCLE__BASE_DATA"] = f"adamsense:{tmp_path / 'nope.csv'}"
    bad = subprocess.run(
        [*cmd, "--trigger-id", "cli-bad"], env=env, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr[-2000:]
    h = _hash(redis_client, "cli-bad")
    assert h["status"] == "failed" and "nope.csv" in h["reason"]
    assert "Traceback" not in bad.stderr


def test_labelled_stream_windows_join_the_pool(
    stack: Settings, redis_client: Any, tmp_path: Path
) -> None:
    from stream_processor.sinks import labels_key

    s = _settings(stack, tmp_path, "wm-pool-stream", stream_source="redis")
    device = f"dev-pool-{tmp_path.name[-6:]}"
    rng = np.random.default_rng(3)
    starts = 1_700_000_000_000 + 2000 * np.arange(20)
    pipe = redis_client.pipeline()
    wins = (rng.normal(size=(20, 200, 6)) * [3, 3, 3, 60, 60, 60]).astype(np.float32)
    for t, x in zip(starts.tolist(), wins, strict=True):
        pipe.xadd(raw_windows_key(device), {"x": encode_raw_window(x)}, id=f"{t}-0")
    # ground truth: "IR" covers windows 0..9 fully, "TAP" windows 12..19; 10, 11 mixed
    pipe.zadd(labels_key(device), {f"{starts[0]}:{starts[9] + 4000}:IR": int(starts[9] + 4000)})
    pipe.zadd(labels_key(device), {f"{starts[12]}:{starts[19] + 4000}:TAP": int(starts[19] + 4000)})
    pipe.execute()
    try:
        ds = P.stream_windows(redis_client, s.signal)
        assert ds is not None
        mine = ds.groups == f"new:stream:{device}"
        labels = [ds.classes[i] for i in ds.y[mine]]
        assert labels == ["IR"] * 10 + ["TAP"] * 8
        np.testing.assert_allclose(ds.x[mine][0], wins[0], rtol=1e-3, atol=0.05)
        held = P.load_new_holdout(s, ["IR", "TAP"], redis_client=redis_client)
        assert held is not None and int(np.sum(held.groups == f"new:stream:{device}")) >= 1
    finally:
        redis_client.delete(raw_windows_key(device), labels_key(device))


def test_labelled_windows_rebuilt_from_the_samples_topic_equal_the_batch_path(
    stack: Settings, redis_client: Any, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """What exists today: the samples topic (bounded by Kafka's retention) and the ground
    truth the worker stores (label:seg:{device}); the pool replays the topic through the
    worker's checks and windower."""
    from stream_processor.sinks import labels_key
    from tests.integration.stream_support import (
        device_windows,
        generated_recording,
        make_run,
        messages_of,
        send,
    )

    rec = generated_recording(tmp_path / "rec", subject=4, seed=4, exercises=3)
    run = make_run(stack, subprocess_env)
    device = f"pool-kafka-{run.run}"
    send(run.settings, messages_of(rec, device))
    segs = {f"{sp.start_ms}:{sp.end_ms}:{sp.label}": sp.end_ms for sp in rec.labels}
    redis_client.zadd(labels_key(device), segs)
    try:
        ds = P.kafka_windows(run.settings, redis_client)
    finally:
        redis_client.delete(labels_key(device))
    assert ds is not None
    mine = ds.groups == f"new:stream:{device}"
    got = dict(zip(ds.start_ms[mine].tolist(), [ds.classes[i] for i in ds.y[mine]], strict=True))
    sig = run.settings.signal
    want_w = device_windows(rec, run.settings, device, labels=rec.labels, purity=sig.label_purity)
    want = dict(zip(want_w.start_ms.tolist(), [str(v) for v in want_w.labels], strict=True))
    assert len(want) > 10 and got == want
    np.testing.assert_array_equal(ds.x[mine][0], want_w.x[0])


@pytest.mark.slow
def test_closed_loop_labels_on_the_stream_to_a_promoted_model_the_worker_serves(
    stack: Settings, redis_client: Any, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """Axis-swapped data streams through a real worker with ground truth on the labels
    topic; `wearmon model retrain` (the monitor's command) builds its pool from the samples
    topic + the stored labels, trains, gates, promotes, publishes; the worker swaps."""
    from tests.integration.stream_support import (
        _fields,
        generated_recording,
        make_run,
        messages_of,
        send,
        start_worker,
        stop_worker,
        wait_for,
    )
    from wearmon.schemas import LabelSegment, SampleBatch, encode

    run = make_run(
        stack,
        subprocess_env,
        WEARMON_STREAM__JIT_COMPILE="false",
        WEARMON_LIFECYCLE__MIN_NEW_WINDOWS="5",
    )
    champ = _champion(run.settings)
    rec = generated_recording(tmp_path / "rec", subject=4, seed=5, exercises=6)
    device = f"loop-{run.run}"
    swapped = [SampleBatch(**{**_fields(m), "x": m.y, "y": m.x}) for m in messages_of(rec, device)]
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    try:
        from confluent_kafka import Producer

        send(run.settings, swapped)
        p = Producer({"bootstrap.servers": run.settings.kafka.bootstrap_servers})
        for sp in rec.labels:
            seg = LabelSegment(
                device=device, start_ms=sp.start_ms, end_ms=sp.end_ms, label=sp.label
            )
            p.produce(run.settings.kafka.labels_topic, key=device.encode(), value=encode(seg))
        assert p.flush(30) == 0
        wait_for(
            lambda: redis_client.zcard(labels_key(device)) == len(rec.labels),
            120,
            [worker],
            log,
            "the worker storing the ground truth",
        )
        out = subprocess.run(
            [sys.executable, "-m", "wearmon.cli.main", "model", "retrain", "--quick",
             "--init-from", "none", "--trigger-id", f"loop-{run.run}"],
            env=run.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        h = _hash(redis_client, f"loop-{run.run}")
        assert h["status"] == "promoted", h
        assert h["champion_version"] == champ and h["challenger_version"] == "2"
        wait_for(
            lambda: "now serving model version 2" in log.read_text(),
            30,
            [worker],
            log,
            "the worker serving the promoted version",
        )
    finally:
        stop_worker(worker)
    rec_ = promotion.read_decisions(run.settings, "2")[0]
    assert rec_["decision"] == "promoted" and rec_["params"]["published"] == "true"
    assert rec_["params"]["pool.stream"].split()[0] != "0"  # windows from the stream
    print(h["reason"])
