"""Readers for every layout, and bad input: a named error or a counted repair."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xlsxwriter

from wearmon.errors import BadRecordingError
from wearmon.signals.readers import read_adamsense, read_garmin_pair, read_recording
from wearmon.signals.windows import window_recording

T0 = 1_742_802_739_000  # 2025-03-24 07:52:19 UTC


def _motion(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    acc = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.05, (n, 3))  # g
    gyr = rng.normal(0, 40.0, (n, 3))  # deg/s
    return acc, gyr


def _write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    for r, row in enumerate(rows):
        ws.write_row(r, 0, row)
    wb.close()
    return path


def _garmin_rows(sensor: str, n_rows: int = 40, per: int = 25, seed: int = 0) -> list[list[Any]]:
    acc, gyr = _motion(n_rows * per, seed)
    vals = acc * 1000 if sensor == "accel" else gyr
    head = ["timestamp", "timestamp_ms", "sample_time_offset"] + [
        f"calibrated_{sensor}_{a}" for a in "xyz"
    ]
    rows: list[list[Any]] = [head]
    for r in range(n_rows):
        t0 = T0 + r * per * 10 + (3 if sensor == "gyro" else 0)
        stamp = dt.datetime.fromtimestamp(t0 // 1000, tz=dt.UTC).strftime("%m/%d/%Y, %I:%M:%S %p")
        offs = [i * 10 for i in range(per)]
        v = vals[r * per : (r + 1) * per]
        rows.append(
            [stamp, t0 % 1000, str(offs) if r % 2 else "[" + ",".join(f'"{o}"' for o in offs) + "]"]
            + ["[" + ", ".join(f"{x:.2f}" for x in v[:, k]) + "]" for k in range(3)]
        )
    return rows


def _pair(tmp: Path, acc_rows=None, gyr_rows=None) -> tuple[Path, Path]:
    a = _write_xlsx(tmp / "s-accelerometer_data.xlsx", acc_rows or _garmin_rows("accel"))
    g = _write_xlsx(tmp / "s-gyroscope_data.xlsx", gyr_rows or _garmin_rows("gyro"))
    return a, g


# ----------------------------------------------------------------------------- formats


def test_garmin_pair_json_and_python_lists_and_partner_lookup(tmp_path: Path) -> None:
    a, g = _pair(tmp_path)
    (tmp_path / "s-labels.csv").write_text(f"start_ms,end_ms,label\n{T0},{T0 + 9000},tap\n")
    rec = read_recording([a])  # partner and labels sidecar found by name
    assert len(rec.accel) == 1000 and rec.accel.t_ms[0] == T0 and rec.gyro.t_ms[0] == T0 + 3
    assert np.allclose(np.median(rec.accel.xyz[:, 2]), 9.80665, atol=0.1)
    assert rec.labels[0].label == "tap"
    rec2 = read_garmin_pair(a, g, tz="Europe/Berlin")  # CET = UTC+1 in March
    assert rec2.accel.t_ms[0] == T0 - 3_600_000


def test_flat_csv_epoch_ms_detects_units(tmp_path: Path) -> None:
    acc, gyr = _motion(1000)
    t = T0 + 20 * np.arange(1000)
    lines = ["timestamp,Ax,Ay,Az,Gx,Gy,Gz"] + [
        f"{t[i]}," + ",".join(f"{v:.4f}" for v in (*acc[i], *np.radians(gyr[i])))
        for i in range(1000)
    ]
    p = tmp_path / "flat.csv"
    p.write_text("\n".join(lines))
    rec = read_recording(p)
    assert rec.meta["format"] == "flat"
    assert np.allclose(rec.accel.xyz, acc * 9.80665, atol=1e-3)  # g -> m/s2
    assert np.allclose(rec.gyro.xyz, gyr, atol=0.01)  # rad/s -> deg/s
    assert len(window_recording(rec).windows) == 8  # starts 740 s .. 754 s (grid-anchored)


def test_flat_excel_w_suffix_iso_times(tmp_path: Path) -> None:
    acc, gyr = _motion(400)
    rows: list[list[Any]] = [["time", "Ax_w", "Ay_w", "Az_w", "Gx_w", "Gy_w", "Gz_w"]]
    for i in range(400):
        ts = dt.datetime.fromtimestamp((T0 + 20 * i) / 1000, tz=dt.UTC).isoformat()
        rows.append([ts, *(acc[i] * 9.81), *gyr[i]])
    rec = read_recording(_write_xlsx(tmp_path / "w.xlsx", rows))
    assert rec.accel.t_ms[0] == T0 and rec.accel.t_ms[-1] == T0 + 20 * 399


def test_xyz_pair_fit_epoch_seconds(tmp_path: Path) -> None:
    acc, gyr = _motion(300)
    fit0 = (T0 / 1000) - 631_065_600  # FIT epoch: seconds since 1989-12-31
    for name, v in (("acc.csv", acc * 1000), ("gyro.csv", gyr)):
        body = [
            f"{fit0 + 0.02 * i:.2f},{v[i, 0]:.3f},{v[i, 1]:.3f},{v[i, 2]:.3f}" for i in range(300)
        ]
        (tmp_path / name).write_text("timestamp,x,y,z\n" + "\n".join(body))
    rec = read_recording([tmp_path / "gyro.csv", tmp_path / "acc.csv"])
    assert rec.accel.t_ms[0] == T0  # 2025, not 2005
    assert np.allclose(np.median(np.linalg.norm(rec.accel.xyz, axis=1)), 9.8, atol=0.3)


def test_adamsense_one_recording_per_user(tmp_path: Path) -> None:
    acc, gyr = _motion(600)
    lines = ["timestamp,Ax_w,Ay_w,Az_w,Gx_w,Gy_w,Gz_w,activity,User"]
    for i in range(600):
        user, k = ("u1", i) if i < 300 else ("u2", i - 300)
        act = "nail_biting" if k < 200 else "sitting"
        vals = ",".join(f"{v:.4f}" for v in (*(acc[i] * 9.81), *gyr[i]))
        lines.append(f"{T0 + 20 * k},{vals},{act},{user}")
    p = tmp_path / "adam.csv"
    p.write_text("\n".join(lines))
    recs = read_adamsense(p)
    assert [r.subject for r in recs] == ["u1", "u2"]
    assert [s.label for s in recs[0].labels] == ["nail_biting", "sitting"]
    assert recs[0].labels[0].end_ms == recs[0].labels[1].start_ms == T0 + 4000
    with pytest.raises(BadRecordingError, match="read_adamsense"):
        read_recording(p)


# ----------------------------------------------------------------------------- bad input


def test_missing_column(tmp_path: Path) -> None:
    rows = [r[:5] for r in _garmin_rows("accel")]  # drop calibrated_accel_z
    a, g = _pair(tmp_path, acc_rows=rows)
    with pytest.raises(BadRecordingError, match=r"accelerometer_data.xlsx.*'calibrated_accel_z'"):
        read_garmin_pair(a, g)


def test_unparseable_cell(tmp_path: Path) -> None:
    rows = _garmin_rows("gyro")
    rows[7][4] = rows[7][4].replace(", ", ", abc, ", 1)
    a, g = _pair(tmp_path, gyr_rows=rows)
    with pytest.raises(BadRecordingError) as e:
        read_garmin_pair(a, g)
    assert e.value.row == 8 and e.value.column == "calibrated_gyro_y"
    assert "gyroscope_data.xlsx, row 8, column 'calibrated_gyro_y'" in str(e.value)


def test_unparseable_time(tmp_path: Path) -> None:
    rows = _garmin_rows("accel")
    rows[3][0] = "yesterday-ish"
    a, g = _pair(tmp_path, acc_rows=rows)
    with pytest.raises(BadRecordingError) as e:
        read_garmin_pair(a, g)
    assert (e.value.row, e.value.column) == (4, "timestamp")


def test_list_length_mismatch(tmp_path: Path) -> None:
    rows = _garmin_rows("accel")
    rows[12][3] = rows[12][3].rsplit(",", 1)[0] + "]"
    a, g = _pair(tmp_path, acc_rows=rows)
    with pytest.raises(BadRecordingError, match="24 values but sample_time_offset has 25") as e:
        read_garmin_pair(a, g)
    assert (e.value.row, e.value.column) == (13, "calibrated_accel_x")


def test_not_a_list(tmp_path: Path) -> None:
    rows = _garmin_rows("accel")
    rows[2][2] = "0;10;20"
    a, g = _pair(tmp_path, acc_rows=rows)
    with pytest.raises(BadRecordingError, match="not a list") as e:
        read_garmin_pair(a, g)
    assert (e.value.row, e.value.column) == (3, "sample_time_offset")


@pytest.mark.parametrize("content", ["", "timestamp,Ax,Ay,Az,Gx,Gy,Gz\n"])
def test_empty_files(tmp_path: Path, content: str) -> None:
    p = tmp_path / "e.csv"
    p.write_text(content)
    with pytest.raises(BadRecordingError, match=r"e\.csv: (empty file|no data rows)"):
        read_recording(p)


def test_empty_excel(tmp_path: Path) -> None:
    p = _write_xlsx(tmp_path / "e-accelerometer_data.xlsx", [])
    with pytest.raises(BadRecordingError, match="empty file"):
        read_recording(p)


def test_non_monotonic_and_duplicates_are_repaired_and_counted(tmp_path: Path) -> None:
    rows = _garmin_rows("accel")
    rows[5], rows[6] = rows[6], rows[5]  # two batches swapped: out of order
    rows.insert(10, list(rows[9]))  # one batch sent twice: 25 duplicate timestamps
    a, g = _pair(tmp_path, acc_rows=rows)
    rec = read_garmin_pair(a, g)
    # backward steps: batch 6 -> 5, and the re-sent batch 9 starting before its copy ends
    assert rec.meta["repairs"] == {"accel_unsorted": 2, "accel_duplicates_dropped": 25}
    assert np.all(np.diff(rec.accel.t_ms) > 0) and len(rec.accel) == 1000


def test_nan_samples_dropped_and_counted(tmp_path: Path) -> None:
    rows = _garmin_rows("gyro")
    rows[4][3] = rows[4][3].replace("[", "[nan, ", 1).rsplit(",", 1)[0] + "]"
    a, g = _pair(tmp_path, gyr_rows=rows)
    rec = read_garmin_pair(a, g)
    assert rec.meta["repairs"] == {"gyro_nan_dropped": 1}
    assert len(rec.gyro) == 999


def test_impossible_values(tmp_path: Path) -> None:
    rows = _garmin_rows("accel")
    rows[20][5] = rows[20][5].replace("[", "[900000.0, ", 1).rsplit(",", 1)[0] + "]"
    a, g = _pair(tmp_path, acc_rows=rows)
    with pytest.raises(BadRecordingError, match="impossible accel value") as e:
        read_garmin_pair(a, g)
    assert (e.value.row, e.value.column) == (21, "calibrated_accel_z")


def test_wrong_units_undetectable_or_forced(tmp_path: Path) -> None:
    acc, gyr = _motion(300)
    lines = ["t_ms,Ax,Ay,Az,Gx,Gy,Gz"] + [
        f"{T0 + 20 * i}," + ",".join(f"{v:.4f}" for v in (*(acc[i] * 1e5), *gyr[i]))
        for i in range(300)
    ]
    p = tmp_path / "u.csv"
    p.write_text("\n".join(lines))
    with pytest.raises(BadRecordingError, match="cannot tell the accelerometer unit"):
        read_recording(p)
    with pytest.raises(BadRecordingError, match="impossible accel value"):
        read_recording(p, accel_unit="g")  # forced, and the values are impossible in g


def test_unknown_layout(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(BadRecordingError, match="unknown layout"):
        read_recording(p)
