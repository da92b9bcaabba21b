"""Error paths of `wearmon replay` that need no running stack: one line, exit 1, fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from wearmon.stack import free_port


def _run(args: list[str], env_extra: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ)
    env.update(env_extra)
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "replay", *args, "--no-metrics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res, time.monotonic() - t0


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_unreachable_broker_fails_fast_with_one_line() -> None:
    port = free_port()  # nothing listens there
    res, took = _run(
        ["--seglearn", "--subjects", "1", "--speed", "max"],
        {"WEARMON_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
    )
    assert res.returncode == 1
    assert _lines(res.stderr) == [_lines(res.stderr)[0]]
    assert (
        res.stderr.startswith("error: Kafka broker at 127.0.0.1:") and "unreachable" in res.stderr
    )
    assert took < 15


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    res, _ = _run([str(tmp_path / "nope.xlsx")], {})
    assert res.returncode == 1
    assert _lines(res.stderr) == [f"error: {tmp_path / 'nope.xlsx'}: no such file"]


def test_unreadable_recording_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "2025-01-01-00-00-00-accelerometer_data.xlsx"
    bad.write_bytes(b"this is not an excel file")
    (tmp_path / "2025-01-01-00-00-00-gyroscope_data.xlsx").write_bytes(b"nor this")
    res, _ = _run([str(bad)], {})
    assert res.returncode == 1
    lines = _lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]


def test_bad_option_is_one_line() -> None:
    res, _ = _run(["--seglearn", "--subjects", "99", "--speed", "max"], {})
    assert res.returncode == 1
    assert _lines(res.stderr) == [
        "error: no seglearn subject '99' (subjects: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"
    ]
