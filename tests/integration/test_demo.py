"""The main job, `wearmon demo`, in its short form end to end on a fresh data directory: a
champion trained, Garmin sessions replayed through the real stack, worker and monitor, the
drift detected, a retraining and the gate's decision; the summary's figures are checked
against Redis and the registry, and nothing is left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_processor.episodes import key_device
from stream_processor.sinks import scored_key
from wearmon.stack import free_port, port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_short_form_tells_the_story_and_its_figures_are_true(tmp_path: Path) -> None:
    import redis

    from monitoring.backtest import scored_windows
    from trainer import registry
    from wearmon.settings import Settings

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
    cmd = [sys.executable, "-m", "wearmon.cli.main"]
    # --duration is a cap, not the length: the demo ends --after device-s after the
    # retraining ended; a short cap ended the replay while a slow retraining still ran
    proc = subprocess.run(
        [*cmd, "demo", "--quick", "--devices", "6", "--speed", "10", "--onset", "60",
         "--after", "60", "--duration", "6000", "--epochs", "2", "--keep-stack"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = proc.stdout
    demo_dir = tmp_path / "demo"
    settings = Settings(
        data_dir=demo_dir,
        ports={
            "kafka": ports["WEARMON_PORTS__KAFKA"],
            "kafka_controller": ports["WEARMON_PORTS__KAFKA_CONTROLLER"],
            "redis": ports["WEARMON_PORTS__REDIS"],
            "prometheus": ports["WEARMON_PORTS__PROMETHEUS"],
        },
    )
    try:
        assert proc.returncode == 0, (out + proc.stderr)[-4000:]
        summary = json.loads((demo_dir / "report" / "summary.json").read_text())
        assert "policy ok -> suspect" in out and "policy suspect -> drift" in out, out
        assert summary["detected_s"] is not None  # the axis swap was caught
        status = summary["retrain"].get("status")
        assert status in ("promoted", "refused"), summary["retrain"]
        # the figures against Redis and the registry
        client = redis.Redis.from_url(settings.redis.url)
        devices = sorted(key_device(k) for k in client.scan_iter(match=scored_key("*")))
        assert len(devices) == summary["devices"] == 6
        assert len(scored_windows(client, devices)) == summary["windows"] > 100
        champion = str(registry.alias_version(settings))
        assert summary["champion_after"] == champion
        if status == "promoted":
            assert (
                champion == summary["retrain"]["challenger_version"] != summary["champion_before"]
            )
            assert summary["accuracy"]["after"] is not None
        else:
            assert champion == summary["champion_before"]
        assert registry.resolve(settings, summary["retrain"]["challenger_version"])
        for pic in ("timeline", "drift_report", "evaluation", "dashboards"):
            assert Path(summary["pictures"][pic]).exists(), pic
        assert "live accuracy, all watches: before" in out and "stack left running" in out
    finally:
        subprocess.run([*cmd, "stack", "down"], env=dict(env, WEARMON_DATA_DIR=str(demo_dir)))
    for name, port in ports.items():
        assert not port_open(port), f"{name} ({port}) still open after the demo"
