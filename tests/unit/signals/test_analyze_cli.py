import json
from pathlib import Path

import matplotlib.image as mpimg
from typer.testing import CliRunner

from wearmon.cli.main import app


def test_make_recording_then_analyze(tmp_path: Path) -> None:
    runner = CliRunner()
    rec_dir = tmp_path / "rec"
    r = runner.invoke(
        app,
        [
            "data",
            "make-recording",
            "--out",
            str(rec_dir),
            "--subject",
            "5",
            "--max-exercises",
            "2",
            "--rest-s",
            "4",
            "--seed",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    acc = next(rec_dir.glob("*-accelerometer_data.xlsx"))
    out = tmp_path / "an"
    r = runner.invoke(app, ["data", "analyze", str(acc), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "garmin-excel" in r.output and "mg -> m/s2" in r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["format"] == "garmin-excel"
    assert s["units_detected"] == {"accel": "mg", "gyro": "deg/s"}
    for sensor in ("accel", "gyro"):
        assert 95 <= s["sensors"][sensor]["rate_hz"] <= 105
        assert 0.5 < s["sensors"][sensor]["jitter_ms"] < 3
        assert s["sensors"][sensor]["gaps"] == 0
    assert s["labels"]["present"] and s["labels"]["spans"] == 2
    assert s["windows"]["count"] > 0
    for png in ("signals.png", "rate_hist.png", "classes.png"):
        img = mpimg.imread(out / png)
        assert img.shape[0] > 100 and img.shape[1] > 100


def test_analyze_bad_file_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n")
    r = CliRunner().invoke(app, ["data", "analyze", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "unknown layout" in str(r.exception)
