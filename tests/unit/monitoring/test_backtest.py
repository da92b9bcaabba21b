"""The pure measures of the backtest: detection delay, alarms, accuracy phases, the table
and the timeline picture, on hand-made records."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from monitoring.backtest import (
    SCENARIOS,
    CheckRecord,
    ScenarioResult,
    ScoredWindow,
    accuracy_phases,
    alarms_per_device_hour,
    count_alarms,
    detection,
    drive,
    interleave_subjects,
    markdown_table,
    plot_timeline,
    retrain_gaps,
    rolling_accuracy,
    timeline_checks,
)

ONSET = 1_000_000


def _check(t: int, drifted: bool, state: str, version: str = "1") -> CheckRecord:
    return CheckRecord(t, t, 2.0 if drifted else 0.5, drifted, state, 120, version)


def test_detection_measures_from_the_onset_to_the_deciding_check() -> None:
    checks = [
        _check(ONSET - 20_000, False, "ok"),
        _check(ONSET + 20_000, False, "ok"),
        _check(ONSET + 40_000, True, "suspect"),
        _check(ONSET + 60_000, True, "drift"),
        _check(ONSET + 80_000, True, "retraining"),
    ]
    assert detection(checks, ONSET) == (40.0, 60.0)
    assert detection(checks[:3], ONSET) == (40.0, None)
    assert detection(checks, None) == (None, None)


def test_a_drifted_check_before_the_onset_is_not_a_detection() -> None:
    checks = [_check(ONSET - 1, True, "drift"), _check(ONSET + 10_000, False, "ok")]
    assert detection(checks, ONSET) == (None, None)


def test_alarms_count_entries_into_drift_before_the_onset() -> None:
    ts = [
        {"from": "ok", "to": "suspect", "at_ms": "10"},
        {"from": "suspect", "to": "drift", "at_ms": "20"},
        {"from": "drift", "to": "retraining", "at_ms": "30"},
        {"from": "suspect", "to": "drift", "at_ms": str(ONSET + 5)},
    ]
    assert count_alarms(ts) == 2
    assert count_alarms(ts, before_ms=ONSET) == 1
    assert alarms_per_device_hour(1, 2.0) == 0.5
    assert math.isnan(alarms_per_device_hour(0, 0.0))


def test_retrain_gaps_are_device_seconds_between_entries_into_retraining() -> None:
    ts = [
        {"from": "drift", "to": "retraining", "at_ms": "30000"},
        {"from": "retraining", "to": "cooldown", "at_ms": "90000"},
        {"from": "drift", "to": "retraining", "at_ms": "1030000"},
    ]
    assert retrain_gaps(ts) == [1000.0]
    assert retrain_gaps(ts[:2]) == []


def test_accuracy_phases_split_by_onset_and_by_the_promoted_version() -> None:
    w = [
        ScoredWindow(ONSET - 4000, True, "1"),
        ScoredWindow(ONSET - 2000, False, "1"),
        ScoredWindow(ONSET, False, "1"),
        ScoredWindow(ONSET + 2000, False, "1"),
        ScoredWindow(ONSET + 4000, True, "2"),
        ScoredWindow(ONSET + 6000, True, "2"),
        ScoredWindow(ONSET + 8000, True, "9"),  # some other version: in no phase
    ]
    acc = accuracy_phases(w, ONSET, "1", "2")
    assert (acc["before"], acc["during"], acc["after"]) == (0.5, 0.0, 1.0)
    assert (acc["n_before"], acc["n_during"], acc["n_after"]) == (2, 2, 2)
    clean = accuracy_phases(w[:2], None, "1", None)
    assert clean["before"] == 0.5 and math.isnan(clean["after"])


def test_accuracy_phases_of_the_held_out_devices() -> None:
    w = [
        ScoredWindow(ONSET - 2000, True, "1", "a"),
        ScoredWindow(ONSET - 2000, False, "1", "b"),
        ScoredWindow(ONSET + 2000, False, "1", "a"),
        ScoredWindow(ONSET + 4000, True, "2", "a"),
        ScoredWindow(ONSET + 4000, False, "2", "b"),
        ScoredWindow(ONSET + 6000, True, "2", "b"),
    ]
    acc = accuracy_phases(w, ONSET, "1", "2", held_out=["a"])
    assert (acc["before"], acc["after"]) == (0.5, 2 / 3)
    assert (acc["before_held_out"], acc["during_held_out"], acc["after_held_out"]) == (1, 0, 1)
    assert (acc["n_before_held_out"], acc["n_after_held_out"]) == (1, 1)
    assert math.isnan(accuracy_phases(w, ONSET, "1", "2")["after_held_out"])


def test_interleaved_recordings_give_every_device_one_subject() -> None:
    from types import SimpleNamespace

    from producers.devices import playlists

    recs = [SimpleNamespace(subject=s, i=i) for s in ("8", "9", "10") for i in range(14)]
    for n_devices in (3, 6, 12):
        lists = playlists(interleave_subjects(recs), n_devices)
        assert all(len({r.subject for r in pl}) == 1 for pl in lists)
        played = [(r.subject, r.i) for pl in lists for r in pl]
        assert sorted(played) == sorted((r.subject, r.i) for r in recs)  # each once


def test_rolling_accuracy_bins_device_time() -> None:
    w = [
        ScoredWindow(0, True, "1"),
        ScoredWindow(10_000, False, "1"),
        ScoredWindow(40_000, True, "1"),
    ]
    x, y = rolling_accuracy(w, 0, bin_s=30.0)
    assert x == [0.25, 0.75] and y == [0.5, 1.0]


def _result() -> ScenarioResult:
    checks = [
        _check(ONSET - 20_000, False, "ok"),
        _check(ONSET + 30_000, True, "suspect"),
        _check(ONSET + 50_000, True, "drift"),
        _check(ONSET + 90_000, False, "cooldown", "2"),
    ]
    return ScenarioResult(
        scenario=SCENARIOS["closed_loop"],
        devices=12,
        device_hours=1.5,
        onset_ms=ONSET,
        checks=checks,
        retrain={"status": "promoted", "reason": "better | on new data"},
        accuracy={"before": 0.8, "during": 0.3, "after": 0.85},
        windows=900,
        first_drifted_s=30.0,
        detected_s=50.0,
        retrainings=1,
    )


def test_markdown_table_has_one_row_per_scenario_and_no_stray_pipes() -> None:
    res = _result()
    res.retrain_gaps_s = [1000.0, 950.0]
    res.stream_while_retraining = {"p50": 0.11, "p99": 0.42, "wall_s": 95.0}
    lines = markdown_table([res, _result()]).strip().splitlines()
    assert len(lines) == 4
    row = lines[2]
    assert all(r.count("|") == lines[0].count("|") for r in lines[1:])
    assert "| 1 (950 s apart) |" in row and "| 0.11 / 0.42 s (95 s) |" in row
    assert lines[3].endswith("| — |")
    assert "80.0 % / 30.0 % / 85.0 %" in row and "promoted: better / on new data" in row
    assert "| 30.0 | 50.0 |" in row


def test_timeline_png_is_written(tmp_path: Path) -> None:
    windows = [ScoredWindow(ONSET - 60_000 + 2000 * i, i % 3 != 0, "1") for i in range(90)]
    out = plot_timeline(_result(), windows, tmp_path / "t.png")
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_a_check_before_any_window_is_not_on_the_timeline() -> None:
    res = _result()
    res.checks = [CheckRecord(ONSET - 9000, 0, math.nan, False, "ok", 0, "1"), *res.checks]
    shown = timeline_checks(res)
    assert shown and all(c.newest_window_ms > 0 for c in shown)
    assert len(shown) == len(res.checks) - 1


def test_a_window_ahead_of_the_checks_clock_is_of_another_replay_and_not_shown() -> None:
    res = _result()
    # the first check of a scenario read the newest window of the one before (its replay
    # ran on a later time base): ahead of the check's own device clock
    res.checks = [CheckRecord(ONSET - 9000, ONSET + 5_000_000, 0.2, False, "ok", 120, "1"),
                  *res.checks]  # fmt: skip
    shown = timeline_checks(res)
    assert len(shown) == len(res.checks) - 1
    assert all(c.newest_window_ms <= c.device_ms for c in shown)


def test_a_slow_check_is_followed_by_a_pause_as_long_as_it_took() -> None:
    import time

    starts: list[float] = []

    def check() -> None:
        starts.append(time.monotonic())
        time.sleep(0.2)

    recs = drive(
        check, lambda: 0, lambda: 0, interval_wall_s=0.01, done=lambda: len(starts) >= 3,
        state=lambda: "ok", version=lambda: "1",
    )  # fmt: skip
    assert len(recs) == 3 and all(r.wall_s >= 0.2 for r in recs)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 0.4 for g in gaps), gaps  # the check's 0.2 s and as long again
