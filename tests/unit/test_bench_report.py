"""benchmarks/report.py: the projection's arithmetic from measured per-device-second figures,
and the page rendered from the JSON says what the JSON says (and nothing it lacks)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def report() -> Any:
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_report"] = mod
    spec.loader.exec_module(mod)
    return mod


def _spread(v: float) -> dict[str, float]:
    return {"median": v, "min": v * 0.9, "max": v * 1.1, "n": 3}


CPU = {
    "worker": 0.3,
    "kafka": 0.2,
    "redis": 0.05,
    "prometheus": 0.01,
    "monitor": 0.02,
    "generator": 0.1,
}


def _step(devices: int, ok: bool, scale: float = 1.0) -> dict[str, Any]:
    cpu = {k: v * scale for k, v in CPU.items()}
    return {
        "devices": devices,
        "ok": ok,
        "p50_s_le": 0.1,
        "p90_s_le": 0.2,
        "p99_s_le": 0.5 if ok else 2.5,
        "ingest_p50_p99_s_le": [0.025, 0.05],
        "queue_p50_p99_s_le": [0.1, 0.2],
        "predictions": devices * 22,
        "expected": devices * 22,
        "worker_cpu_us_per_msg": 301.5,
        "machine_busy_cores": 1.4,
        "load1": 1.7,
        "redis": {"bytes_out_per_device_s": 20.0, "calls_per_device_s": {"xadd": 1.0, "hset": 1.0}},
        "kafka_log_bytes_per_device_s": {"wearmon.samples": 7800.0, "wearmon.predictions": 200.0},
        "spread": {
            "p99_s_le": _spread(0.5),
            "cpu_ms_per_device_s": {k: _spread(v) for k, v in cpu.items()},
            "redis_commands_per_device_s": _spread(5.0),
            "redis_bytes_in_per_device_s": _spread(4000.0),
            "kafka_bytes_per_device_s": _spread(8000.0),
        },
    }


def _data() -> dict[str, Any]:
    naive = {
        "devices": 20,
        "ok": True,
        "p50_s": 0.1,
        "p99_s": 0.4,
        "predictions": 450,
        "expected": 450,
        "spread": {"p99_s": _spread(0.4)},
        "cpu_ms_per_device_s": {"consumer": 36.0, "kafka": 9.0, "redis": 0.5, "generator": 1.5},
    }
    return {
        "schema": 1,
        "generated_utc": "2026-12-02 20:00 UTC",
        "commit": "abc1234",
        "command": "benchmarks/report.py ",
        "note": "shared machine",
        "seconds": 900.0,
        "machine": {
            "cpu_model": "Test CPU @ 2.0GHz",
            "cores": 2,
            "python": "3.11.9",
            "kernel": "6.1",
            "load_before": [0.5, 0.4, 0.3],
            "during": {
                "load1_median": 1.9,
                "load1_max": 2.4,
                "busy_cores_median": 1.6,
                "busy_cores_max": 2.0,
                "samples": 10,
            },
            "load_after": [1.0, 0.9, 0.8],
        },
        "parts": {},
        "assumptions": {},
        "stream": {
            "cpus": 2,
            "workers": 2,
            "message_ms": 500,
            "measure_s": 15.0,
            "repeats": 3,
            "monitor": True,
            "pass_share": 0.99,
            "pipeline": [_step(100, True, 3.0), _step(1000, True), _step(1500, False)],
            "naive": [naive, {**naive, "devices": 40, "ok": False}],
            "pipeline_devices": 1000,
            "naive_devices": 20,
            "ratio": 50.0,
        },
        "drift": {
            "repeats": 3,
            "devices": 50,
            "loadavg_start": [1.0],
            "loadavg_end": [1.1],
            "reference_pool_windows": 30000,
            "rows": [
                {
                    "reference": 10_000,
                    "live": 2_000,
                    "max_live": 2000,
                    "build_s": _spread(0.002),
                    "check_s": _spread(0.05),
                }
            ],
        },
    }


def test_projection_from_the_best_step_that_held(report: Any) -> None:
    data = _data()
    p10, p100 = report.project(data, 10_000), report.project(data, 100_000)
    assert p10["from_step"] == 1000  # not the 100-device step (3x the cost), nor the failed one
    # worker: 0.3 ms/device-s x 10,000 = 3 cores; at 60 % of one core each: 5 workers
    assert p10["cores"]["worker"] == 3.0 and p10["workers"] == 5 and p10["partitions"] == 10
    # brokers: replication 3; CPU 2 cores x 3 / (4 x 0.6) = 2.5 -> 3; bytes 80 MB/s x 3 / 50
    assert p10["brokers_by"] == {"replication": 3, "cpu": 3, "bytes": 5} and p10["brokers"] == 5
    assert p10["redis_shards"] == 1 and p10["redis_ops_s"] == 50_000
    assert p10["kafka_bytes_s"] == 80_000_000 and p10["redis_bytes_in_s"] == 40_000_000
    assert p100["workers"] == 50 and p100["partitions"] == 100
    assert p100["brokers"] == 48  # 800 MB/s x 3 / 50 MB/s
    assert p100["redis_shards"] == 9  # 5 cores / 0.6
    # monitor: 50,000 windows/s, a check per 2,000: 25 checks/s x 0.05 s
    assert p100["monitor_checks_s"] == 25.0 and p100["monitor_check_cores"] == 1.25
    assert p10["monitor_checks_s"] == 2.5


def test_assumptions_in_the_json_change_the_projection(report: Any) -> None:
    data = _data()
    data["assumptions"] = {"target_utilisation": 0.5, "partitions_per_worker": 4}
    p = report.project(data, 10_000)
    assert p["workers"] == 6 and p["partitions"] == 24


def test_no_step_held_is_an_error_and_the_page_says_so(report: Any) -> None:
    data = _data()
    for s in data["stream"]["pipeline"]:
        s["ok"] = False
    with pytest.raises(ValueError, match="no pipeline step held"):
        report.project(data, 10_000)
    assert "Not computed: no pipeline step held." in report.render(data)


def test_the_page_is_what_the_json_says(report: Any) -> None:
    data = _data()
    page = report.render(data)
    assert "Test CPU @ 2.0GHz, 2 cores" in page and "**shared machine**" in page
    assert "before: 0.5, 0.4, 0.3" in page and "1-min load median 1.9, max 2.4" in page
    assert "| 1,000 | yes | ≤ 0.1 / ≤ 0.2 / ≤ 0.5 s (p99 0.45-0.55 over the repeats) |" in page
    assert "| 1,500 | no |" in page
    assert "Held: 1,000 devices through the pipeline, 20 naive: 50x the naive baseline" in page
    # the naive's 47 ms against the pipeline's 0.68 ms per device-second, same run
    assert "0.680 CPU ms, the naive baseline at 20 47.000 ms: 69.1x less" in page
    assert "| 10,000 | 2,000 | 0.002 | 0.050 (0.045-0.055) |" in page
    assert "| workers | 5 | 50 |" in page and "| brokers (replication / CPU / bytes) | 5" in page
    assert "## Inference paths" not in page  # not in the JSON, not on the page
    changed = copy.deepcopy(data)
    changed["stream"]["pipeline"][1]["spread"]["cpu_ms_per_device_s"]["worker"] = _spread(0.6)
    assert "| workers | 10 | 100 |" in report.render(changed)
    assert report.render(data) == page  # deterministic


def test_the_recorded_command_leaves_out_the_note(report: Any) -> None:
    assert report._options(["--note", "shared machine", "--soak"]) == ["--soak"]
    assert report._options(["--note=x", "--steps", "100,200"]) == ["--steps", "100,200"]
