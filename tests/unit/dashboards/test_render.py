"""The renderer's pure parts, and its one-line error when nothing is there to read."""

from __future__ import annotations

import os
import subprocess
import sys

from monitoring.dashboards.generate import dashboard_json
from monitoring.dashboards.render import _cell, _row_spans, fmt, tick_labels
from wearmon.stack import free_port


def test_values_as_grafana_shows_them() -> None:
    assert fmt(0.19, "s") == "190 ms"
    assert fmt(2.5, "s") == "2.50 s"
    assert fmt(0.1, "percentunit", 0) == "10 %"
    assert fmt(1.09, "none", 0) == "1"
    assert fmt(3.25, "wps") == "3.2/s"


def test_axis_ticks_get_the_decimals_their_spacing_needs() -> None:
    # a flat checkpoint write time of ~9.5 ms read "10 ms, 10 ms, 9 ms, 9 ms" on the axis
    assert tick_labels([0.0090, 0.0092, 0.0094], "s") == ["9.0 ms", "9.2 ms", "9.4 ms"]
    assert tick_labels([0.0, 0.05, 0.1], "s") == ["0 ms", "50 ms", "100 ms"]
    assert tick_labels([0.5, 1.0, 1.5], "s") == ["500 ms", "1.00 s", "1.50 s"]
    labels = tick_labels([0.00900, 0.00901, 0.00902], "s")
    assert len(set(labels)) == 3, labels


def test_table_cells_follow_the_panel_s_renames_and_unit_overrides() -> None:
    panel = next(
        p for p in dashboard_json("participant")["panels"] if p["title"] == "Latest prediction"
    )
    organize = next(t["options"] for t in panel["transformations"] if t["id"] == "organize")
    assert organize["renameByName"]["confidence"] == "Confidence"
    units = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in panel["fieldConfig"]["overrides"]
    }
    assert units == {"Confidence": "percentunit", "Latency": "ms"}
    assert _cell("confidence", "0.457800", units["Confidence"]) == "45.8 %"
    assert _cell("latency_ms", "127.0", units["Latency"]) == "127 ms"
    assert _cell("window_start_ms", "1742800000000") == "07:06:40"
    assert _cell("label", "TAP") == "TAP"


def test_spans_of_episodes_and_windows() -> None:
    episodes = [{"start_ms": "1000", "end_ms": "9000", "activity": "sit"}]
    assert _row_spans(episodes) == [(1.0, 9.0, "sit")]
    windows = [
        {"window_start_ms": "0", "window_end_ms": "4000", "label": "a"},
        {"window_start_ms": "2000", "label": "b"},
    ]
    assert _row_spans(windows) == [(0.0, 4.0, "a"), (2.0, 4.0, "b")]


def test_render_without_a_stack_is_one_line_error(tmp_path) -> None:
    env = dict(
        os.environ,
        WEARMON_DATA_DIR=str(tmp_path),
        WEARMON_PORTS__PROMETHEUS=str(free_port()),
        WEARMON_PORTS__REDIS=str(free_port()),
    )
    out = subprocess.run(
        [sys.executable, "-m", "wearmon.cli.main", "dashboards", "render"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    assert "unavailable" in lines[-1] or "unreachable" in lines[-1]
    assert "Traceback" not in out.stderr
