"""The main job, `wearmon demo`, end to end on a fresh data directory: it trains a model,
replays generated recordings through the real stack and a real worker, prints the summary,
and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wearmon.stack import free_port, port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_the_whole_pipeline_and_stops_everything(tmp_path: Path) -> None:
    ports = {
        "WEARMON_PORTS__KAFKA": free_port(),
        "WEARMON_PORTS__KAFKA_CONTROLLER": free_port(),
        "WEARMON_PORTS__REDIS": free_port(),
        "WEARMON_PORTS__PROMETHEUS": free_port(),
        "WEARMON_METRICS__STREAM_PORT": free_port(),
        "WEARMON_METRICS__REPLAY_PORT": free_port(),
        "WEARMON_METRICS__MONITOR_PORT": free_port(),
    }
    env = dict(os.environ, WEARMON_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in ports.items()})
    proc = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "demo", "--devices", "2", "--subjects", "3",
         "--speed", "max", "--epochs", "1"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, (out + proc.stderr)[-4000:]
    assert "no champion registered: training one" in out
    assert "worker is serving model version 1" in out
    assert "windows classified for 2 devices" in out
    assert "live accuracy of version 1" in out
    assert "prometheus: predictions written" in out
    assert "stack stopped" in out
    # Everything the demo started is gone: no service answers on its ports.
    for name, port in ports.items():
        assert not port_open(port), f"{name} ({port}) still open after the demo"
    # Its data stays in its own folder.
    assert (tmp_path / "demo" / "recordings" / "subject-3").is_dir()
    assert (tmp_path / "demo" / "mlflow" / "mlflow.db").is_file()
