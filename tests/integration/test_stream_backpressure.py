"""No model yet: the worker stops taking sample messages once ``max_pending_windows`` wait
(back-pressure, memory bounded); once a champion is registered every window is written."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.stream_support import (
    all_predicted,
    expected_by_device,
    generated_recording,
    history,
    make_run,
    messages_of,
    register_tiny,
    running_worker,
    send,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording
from wearmon.stack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=9, seed=8, exercises=1)


def _gauge(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_backpressure_while_no_model_then_every_window(
    stack: Settings,
    redis_client: Any,
    subprocess_env: dict[str, str],
    recording: Recording,
    tmp_path: Path,
) -> None:
    run = make_run(stack, subprocess_env, WEARMON_STREAM__MAX_PENDING_WINDOWS="30")
    devices = [f"bp-{run.run}-{i}" for i in range(4)]
    log, port = tmp_path / "worker.log", free_port()
    with running_worker(run.env, log, metrics_port=port) as worker:
        send(run.settings, [m for d in devices for m in messages_of(recording, d)])
        wait_for(
            lambda: _gauge(port, "wearmon_stream_backpressure") == 1.0,
            120, [worker], log, "back-pressure while no model is loaded",
        )  # fmt: skip
        register_tiny(run.settings, tmp_path, seed=1)
        expected = expected_by_device(recording, run.settings, devices)
        wait_for(lambda: all_predicted(redis_client, expected), 180, [worker], log,
                 "every window once a model is there")  # fmt: skip
        time.sleep(1.0)
        assert _gauge(port, "wearmon_stream_backpressure") == 0.0
    for d, exp in expected.items():
        starts = [int(r["window_start_ms"]) for r in history(redis_client, d)]
        assert len(starts) == len(set(starts))
        assert set(exp) <= set(starts), f"{d}: {len(set(exp) - set(starts))} windows missing"
