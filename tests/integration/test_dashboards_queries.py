"""Every dashboard query is real: a short pipeline run (a worker, `wearmon replay` with a
few faults, a hot swap, bad messages) is scraped by the real Prometheus; every Prometheus
panel query must parse there, and the queries of metrics that exist must return data. Every
Redis panel command runs against the real Redis. `wearmon monitor` checks the live windows
meanwhile. Then `wearmon dashboards render` draws every panel with data."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitoring.dashboards.generate import builders, dashboard_json
from monitoring.dashboards.live import Prometheus, Result, Window, run_redis
from monitoring.dashboards.queries import metric_names, queries
from monitoring.keys import DRIFT_LATEST, POLICY_LOG
from stream_processor.episodes import key_device
from stream_processor.sinks import latest_key
from tests.integration.stream_support import (
    make_run,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.unit.dashboards.test_dashboards import known_metrics
from wearmon.settings import Settings

pytestmark = pytest.mark.integration

#: metrics the short run must produce: the stream's, the replay's and the monitor's
PRODUCED = known_metrics()
#: Redis keys that stay empty in a run without drift (no policy transition)
EMPTY_WITHOUT_DRIFT = {POLICY_LOG}


@dataclass
class Demo:
    settings: Settings
    window: Window
    device: str
    workdir: Path


def _replay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = [
        "replay", "--seglearn", "--subjects", "1", "--devices", "2", "--speed", "4",
        "--duration", "160", "--stagger", "0", "--duplicate", "0.02", "--jitter", "3",
        "--gap-every", "40", "--gap-len", "1", "--fault-seed", "3", "--no-progress",
    ]  # fmt: skip
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "wearmon.cli.main", *args],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


class _Calibration(threading.Thread):
    """The drift calibration the monitor would compute from the base data at its first
    check (most of this test's time: 140 of 250 s on a loaded machine), computed here from
    3 of its 10 subjects, beside the start of the stack's processes, and put in the
    monitor's cache for the champion. The monitor's checks are the real ones; their
    thresholds come from fewer subjects (the computation from all of them is
    tests/integration/test_monitor.py's)."""

    SUBJECTS = 3

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.result: dict[str, Any] | None = None

    def run(self) -> None:
        import numpy as np

        from monitoring.calibration import base_features, calibrate

        frame, subjects = base_features(Settings())
        keep = np.isin(subjects, sorted(set(subjects.tolist()))[: self.SUBJECTS])
        self.result = calibrate(frame[keep].reset_index(drop=True), subjects[keep])

    def save(self, settings: Settings, version: str) -> None:
        from monitoring.calibration import cache_path

        assert self.result is not None, "the calibration failed (see the test's output)"
        path = cache_path(settings, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.result))


@pytest.fixture(scope="module")
def demo(
    stack: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    session_subprocess_env: dict[str, str],
) -> Iterator[Demo]:
    import redis

    tmp = tmp_path_factory.mktemp("dash")
    calibration = _Calibration()
    calibration.start()
    run = make_run(stack, session_subprocess_env)
    register_tiny(run.settings, tmp, seed=1)
    log = tmp / "worker.log"
    t0 = time.time()
    worker = start_worker(run.env, log)
    monitor_env = dict(
        run.env,
        WEARMON_MONITOR__INTERVAL_S="5",
        WEARMON_MONITOR__MIN_WINDOWS="20",
        WEARMON_MONITOR__RETRAIN="false",
    )
    client = redis.Redis.from_url(stack.redis.url)
    procs: list[subprocess.Popen[bytes]] = [worker]
    keys = lambda: list(client.scan_iter(match=latest_key("dev-*"), count=1000))  # noqa: E731
    try:
        # bad messages: dead letters by reason
        send(run.settings, [], extra=[("bad-0", b"\x00not json"), ("bad-1", b"{}")])
        replay = _replay(run.env, tmp / "replay.log")
        procs.append(replay)
        wait_for(lambda: keys(), 120, [worker], log, "the first predictions")
        time.sleep(5)  # a scrape of the first model's series
        # a new champion while the replay goes on: the worker hot-swaps. The monitor starts
        # after it, with the champion's drift calibration in its cache (see _Calibration)
        champion = register_tiny(run.settings, tmp, seed=2)
        calibration.join()
        calibration.save(run.settings, champion)
        with open(tmp / "monitor.log", "ab") as fh:
            monitor = subprocess.Popen(
                [sys.executable, "-m", "wearmon.cli.main", "monitor"],
                env=monitor_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(monitor)
        assert replay.wait(240) == 0, (tmp / "replay.log").read_text()[-3000:]
        # more bad messages once Prometheus has seen the counters: an increase to show
        send(run.settings, [], extra=[("bad-2", b"\x00not json"), ("bad-3", b"[1]")])
        wait_for(lambda: len(keys()) >= 2, 60, [worker], log, "predictions of 2 devices")
        wait_for(
            lambda: client.exists(DRIFT_LATEST), 180, [monitor], tmp / "monitor.log",
            "a drift check of the monitor",
        )  # fmt: skip
        time.sleep(12)  # two more scrapes (the last counters, the check)
        device = sorted(key_device(k) for k in keys())[0]
        yield Demo(stack, Window(t0, time.time(), step_s=5), device, tmp)
    finally:
        for p in procs:
            stop_worker(p)
        client.close()


def _prom_results(demo: Demo) -> list[Result]:
    prom = Prometheus(f"http://127.0.0.1:{demo.settings.ports.prometheus}")
    out = []
    for name in builders():
        for q in queries(name, dashboard_json(name)):
            if q.is_prometheus:
                out.append(prom.run(q, demo.window))  # raises if it does not parse
    return out


def test_every_prometheus_query_parses_and_existing_metrics_return_data(demo: Demo) -> None:
    results = _prom_results(demo)
    assert len(results) > 40
    empty = [
        f"{r.query.dashboard}: {r.query.panel}: {r.command}"
        for r in results
        if metric_names(str(r.query.target["expr"])) <= PRODUCED and not r.has_data
    ]
    assert empty == [], "\n".join(empty)
    assert all(metric_names(str(r.query.target["expr"])) <= PRODUCED for r in results)


def test_every_redis_query_runs_and_participant_panels_have_data(demo: Demo, redis_client) -> None:
    variables = {"participant": demo.device}
    seen = 0
    for name in builders():
        for q in queries(name, dashboard_json(name)):
            if q.is_prometheus:
                continue
            result = run_redis(redis_client, q, variables)  # raises if Redis refuses it
            seen += 1
            if q.target["keyName"] not in EMPTY_WITHOUT_DRIFT:
                rows = result.rows
                assert rows and rows != [{"value": "0"}], f"{q.panel}: {result.command}"
    assert seen >= 8


def test_render_draws_every_panel(demo: Demo) -> None:
    from monitoring.dashboards.render import render_all

    out = demo.workdir / "render"
    report = render_all(demo.settings, out, window=demo.window, participant=demo.device)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(builders())
    assert all(p.stat().st_size > 20_000 for p in out.glob("*.png"))
    for name, views in report.items():
        for v in views:
            # every panel over what this run produces draws data; the monitor's wait for it
            if v.title != "Policy decisions and reasons":
                assert v.has_data, f"{name}: {v.title} drew no data"
