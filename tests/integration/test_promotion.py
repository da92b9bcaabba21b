"""Promotion against the real services: decide_and_promote publishes the new champion on
model:champion (a subscriber sees the message), records it in MLflow, and a running worker
(registry polling set to 30 s, so only the message can explain it) swaps within a second."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_processor.sinks import history_key
from tests.integration.stream_support import (
    device_windows,
    generated_recording,
    make_run,
    messages_of,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.unit.trainer import ab_models as ab
from trainer import promotion, registry
from trainer.serving import load_version
from wearmon.settings import Settings

pytestmark = pytest.mark.integration

CHANNEL = "model:champion"


class Listener:
    """Subscribes to model:champion before anything is published; notes each message and
    the time it arrived."""

    def __init__(self, redis_client: Any) -> None:
        self.pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANNEL)
        self.pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.pubsub.get_message(timeout=0.05)
            if m is not None and m["type"] == "message":
                self.got.append((time.time(), m["data"].decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


def test_promotion_publishes_and_is_recorded(
    stack: Settings, redis_client: Any, tmp_path: Path
) -> None:
    s = stack.model_copy(update={"data_dir": tmp_path / "data", "model_name": "wm-promo-pub"})
    vs = {k: ab.register(s, tmp_path / "m", k) for k in ("const_a", "smart")}
    listener = Listener(redis_client)
    try:
        promotion.set_champion(s, vs["const_a"], reason="setup", decision="initial")
        d = promotion.decide_and_promote(
            s,
            vs["smart"],
            base_holdout=ab.base_holdout(),
            new_holdout=ab.new_holdout(),
            trigger_id="trig-pub",
        )
        wait_for(lambda: len(listener.got) >= 2, 10, what="two messages on model:champion")
    finally:
        listener.close()
    assert d.promoted and d.change is not None and d.change.published
    assert [v for _, v in listener.got] == [vs["const_a"], vs["smart"]]
    assert registry.alias_version(s, "champion") == vs["smart"]
    rec = promotion.read_decisions(s, vs["smart"])[0]
    assert rec["decision"] == "promoted" and rec["params"]["published"] == "true"
    assert rec["trigger_id"] == "trig-pub" and rec["params"]["previous_champion"] == vs["const_a"]


def _log_time(line: str) -> float:
    stamp = re.match(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line)
    assert stamp, line
    return dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_running_worker_swaps_within_a_second_of_promotion(
    stack: Settings, redis_client: Any, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    rec = generated_recording(tmp_path / "rec", subject=2, seed=3, exercises=3)
    run = make_run(
        stack,
        subprocess_env,
        WEARMON_STREAM__MODEL_POLL_S="30",
        WEARMON_STREAM__JIT_COMPILE="false",
    )
    v1 = register_tiny(run.settings, tmp_path, seed=5)
    v2 = register_tiny(run.settings, tmp_path, seed=6, champion=False)
    device = f"promo-{run.run}"
    # held-out windows labelled with what v2 says: v2 is right on all of them, v1 is not
    x = device_windows(rec, run.settings, device).x[:80]
    truth = tuple(load_version(run.settings, v2).predict(x)[0])
    v1_acc = float(np.mean(np.asarray(load_version(run.settings, v1).predict(x)[0]) == truth))
    assert v1_acc < 0.95, "the two random models must disagree for this test"
    base = promotion.Holdout(x[:40], truth[:40], "test:base", "b")
    new = promotion.Holdout(x[40:], truth[40:], "test:new", "n")
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)
    listener = Listener(redis_client)
    try:
        send(run.settings, messages_of(rec, device)[:400])
        wait_for(
            lambda: redis_client.xlen(history_key(device)) > 2, 120, [worker], log, "v1 serving"
        )
        assert f"now serving model version {v1}" in log.read_text()
        d = promotion.decide_and_promote(
            run.settings, v2, base_holdout=base, new_holdout=new, trigger_id="trig-swap"
        )
        assert d.promoted, d.reason
        wanted = f"now serving model version {v2}"
        wait_for(lambda: wanted in log.read_text(), 10, [worker], log, "the swap to v2")
    finally:
        listener.close()
        stop_worker(worker)
    published = [t for t, v in listener.got if v == v2]
    assert published, listener.got
    line = next(ln for ln in log.read_text().splitlines() if wanted in ln)
    delay = _log_time(line) - published[0]
    print(f"swap {delay:.3f} s after the message on {CHANNEL}")
    assert delay < 1.0, f"the worker swapped {delay:.2f} s after the message"
