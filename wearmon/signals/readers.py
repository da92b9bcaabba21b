"""Readers for every recording format wearmon accepts, all returning :class:`Recording`.

Formats (docs/signals.md, "Formats"):

- Garmin-style Excel pair: one file per sensor, one row per batch of ~25 samples, list cells
  (:func:`read_garmin_pair`), with an optional ``<stamp>-labels.csv`` sidecar;
- flat per-sample tables (CSV or Excel): a time column plus ``Ax..Gz`` (optional ``_w``
  suffix) in one file, or ``x, y, z`` in one file per sensor;
- ADAM-Sense labelled tables (``timestamp, Ax_w..Gz_w, activity, User``, :func:`read_adamsense`);
- the seglearn watch data set, read from the file the PyPI package ships
  (:func:`load_seglearn_watch`).

Rows are reported 1-based as a spreadsheet shows them (the header is row 1). Repairs
(duplicate timestamps dropped, out-of-order samples sorted, NaN samples dropped) are logged
and counted in ``Recording.meta["repairs"]``; anything else that is wrong raises
:class:`~wearmon.errors.BadRecordingError` naming file, row and column.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wearmon.errors import BadRecordingError
from wearmon.signals import units
from wearmon.signals.types import (
    ACCEL_UNIT,
    GRID_MS,
    GYRO_UNIT,
    LabelSpan,
    Recording,
    SensorSeries,
)

log = logging.getLogger(__name__)

#: t_ms of the first sample of the seglearn recording number 0 (2020-01-01T00:00:00Z);
#: recording i starts at SEGLEARN_BASE_MS + i * SEGLEARN_SPACING_MS.
SEGLEARN_BASE_MS = 1_577_836_800_000
SEGLEARN_SPACING_MS = 3_600_000

#: physical limits used to reject impossible values (canonical units)
MAX_ACCEL_MS2 = 16 * 9.80665 * 4  # far beyond any wrist sensor's range (16 g)
MAX_GYRO_DPS = 4000.0 * 2


# --------------------------------------------------------------------------- shared helpers


def seglearn_watch_path() -> Path:
    """Path of ``watch_dataset.npy`` inside the installed seglearn package (not imported)."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        raise BadRecordingError("the seglearn package is not installed (pip install seglearn)")
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / "data" / "watch_dataset.npy"
    if not path.is_file():
        raise BadRecordingError(
            "watch_dataset.npy not found in the seglearn package", path=str(path)
        )
    return path


def _add_repair(repairs: dict[str, int], key: str, n: int) -> None:
    if n:
        repairs[key] = repairs.get(key, 0) + int(n)


def make_series(
    sensor: str,
    t_ms: np.ndarray,
    xyz: np.ndarray,
    *,
    unit: str | None,
    path: str = "",
    repairs: dict[str, int] | None = None,
    rows: np.ndarray | None = None,
    columns: Sequence[str] = ("x", "y", "z"),
    units_in: dict[str, str] | None = None,
    rows_are_batches: bool = False,
) -> SensorSeries:
    """Validate, repair and convert raw samples of one sensor into a canonical SensorSeries.

    Repairs (counted in ``repairs``, logged): samples with NaN dropped; out-of-order samples
    sorted; duplicate timestamps dropped (the first arrival is kept). ``unit`` None: detected.
    ``rows`` gives the source row of each sample for error messages; with
    ``rows_are_batches`` (a row holds a batch of samples, as in Garmin exports) they are kept
    as the series' ``batch``.
    """
    reps = repairs if repairs is not None else {}
    t = np.asarray(t_ms, dtype=np.int64)
    a = np.asarray(xyz, dtype=np.float64)
    if t.shape[0] == 0:
        raise BadRecordingError(f"no {sensor} samples", path=path or None)
    if np.isinf(a).any():
        k, c = np.argwhere(np.isinf(a))[0]
        raise BadRecordingError(
            "infinite value",
            path=path or None,
            row=int(rows[k]) if rows is not None else None,
            column=columns[c],
        )
    nan = np.isnan(a).any(axis=1)
    if nan.any():
        n_nan = int(nan.sum())
        if n_nan == t.shape[0]:
            raise BadRecordingError(f"every {sensor} sample is NaN", path=path or None)
        log.warning("%s: dropped %d %s samples with NaN values", path, n_nan, sensor)
        _add_repair(reps, f"{sensor}_nan_dropped", n_nan)
        t, a = t[~nan], a[~nan]
        if rows is not None:
            rows = rows[~nan]
    d = np.diff(t)
    if (d < 0).any():
        n_back = int((d < 0).sum())
        log.warning("%s: %d %s samples out of time order; sorted", path, n_back, sensor)
        _add_repair(reps, f"{sensor}_unsorted", n_back)
        order = np.argsort(t, kind="stable")
        t, a = t[order], a[order]
        if rows is not None:
            rows = rows[order]
        d = np.diff(t)
    dup = np.concatenate(([False], d == 0))
    if dup.any():
        n_dup = int(dup.sum())
        log.warning("%s: dropped %d %s samples with duplicate timestamps", path, n_dup, sensor)
        _add_repair(reps, f"{sensor}_duplicates_dropped", n_dup)
        t, a = t[~dup], a[~dup]
        if rows is not None:
            rows = rows[~dup]
    if sensor == "accel":
        u = units.normalize_unit(unit) if unit else units.detect_accel_unit(a)
        out = units.accel_to_canonical(a, u)
        limit, canon = MAX_ACCEL_MS2, ACCEL_UNIT
    elif sensor == "gyro":
        u = units.normalize_unit(unit) if unit else units.detect_gyro_unit(a)
        out = units.gyro_to_canonical(a, u)
        limit, canon = MAX_GYRO_DPS, GYRO_UNIT
    else:
        raise ValueError(f"unknown sensor {sensor!r}")
    if units_in is not None:
        units_in[sensor] = u
    over = np.abs(out) > limit
    if over.any():
        k, c = np.argwhere(over)[0]
        raise BadRecordingError(
            f"impossible {sensor} value {a[k, c]:.6g} {u} (beyond {limit:.0f} {canon}); "
            "wrong unit?",
            path=path or None,
            row=int(rows[k]) if rows is not None else None,
            column=columns[c],
        )
    batch = rows.astype(np.int64) if rows_are_batches and rows is not None else None
    return SensorSeries(sensor=sensor, t_ms=t, xyz=out, unit=canon, batch=batch)


# --------------------------------------------------------------------------- seglearn


def load_seglearn_watch(path: str | Path | None = None) -> list[Recording]:
    """The 140 recordings of the seglearn watch data set (10 subjects, 7 shoulder exercises).

    Each sample sits exactly on the 20 ms grid: recording ``i`` starts at
    ``SEGLEARN_BASE_MS + i * SEGLEARN_SPACING_MS`` (a multiple of the 2 s window hop), one
    LabelSpan covers it with its class name, ``subject`` is the subject number as a string,
    and units are canonical (accel g -> m/s2, gyro rad/s -> deg/s).
    """
    p = Path(path) if path is not None else seglearn_watch_path()
    try:
        data = np.load(p, allow_pickle=True).item()
        xs, ys = data["X"], data["y"]
        names = [str(n) for n in data["y_labels"]]
        subjects = data["subject"]
        sides = data.get("side")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise BadRecordingError(f"not a seglearn watch data set: {exc}", path=str(p)) from None
    recs: list[Recording] = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        arr = np.asarray(x, dtype=np.float64)
        t0 = SEGLEARN_BASE_MS + i * SEGLEARN_SPACING_MS
        t = t0 + GRID_MS * np.arange(arr.shape[0], dtype=np.int64)
        accel = SensorSeries("accel", t, units.accel_to_canonical(arr[:, :3], "g"), ACCEL_UNIT)
        gyro = SensorSeries("gyro", t, units.gyro_to_canonical(arr[:, 3:6], "rad/s"), GYRO_UNIT)
        label = names[int(y)]
        meta: dict[str, object] = {"index": i, "format": "seglearn", "rate_hz": 50}
        if sides is not None:
            meta["side"] = float(sides[i])
        recs.append(
            Recording(
                accel=accel,
                gyro=gyro,
                labels=(LabelSpan(int(t[0]), int(t[-1]) + GRID_MS, label),),
                subject=str(int(subjects[i])),
                source=f"seglearn:watch_dataset#{i}",
                meta=meta,
            )
        )
    return recs


# --------------------------------------------------------------------------- tables

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
FIT_EPOCH_OFFSET_S = 631_065_600  # 1989-12-31T00:00:00Z in Unix seconds
GARMIN_TIME_FORMAT = "%m/%d/%Y, %I:%M:%S %p"
TIME_COLUMNS = ("timestamp", "time", "t_ms", "timestamp_ms", "datetime", "date", "t", "ts")


class Table:
    """A sheet or CSV as named columns of raw cells (first row = header)."""

    def __init__(self, path: Path, header: list[str], columns: list[list[Any]]) -> None:
        self.path = path
        self.header = header
        self.cols = columns
        self.n_rows = len(columns[0]) if columns else 0
        self._index = {h.strip().lower(): i for i, h in enumerate(header)}

    def has(self, name: str) -> bool:
        return name.lower() in self._index

    def raw(self, name: str) -> list[Any]:
        key = name.lower()
        if key not in self._index:
            raise BadRecordingError(
                f"missing column (columns: {', '.join(self.header)})",
                path=str(self.path),
                column=name,
            )
        return self.cols[self._index[key]]

    def name(self, name: str) -> str:
        return self.header[self._index[name.lower()]]


def load_table(path: str | Path) -> Table:
    """Read a CSV or Excel file (calamine) into a :class:`Table`; empty files are errors."""
    p = Path(path)
    if not p.is_file():
        raise BadRecordingError("no such file", path=str(p))
    if p.stat().st_size == 0:
        raise BadRecordingError("empty file", path=str(p))
    if p.suffix.lower() in EXCEL_SUFFIXES:
        import python_calamine

        try:
            rows = python_calamine.load_workbook(str(p)).get_sheet_by_index(0).to_python()
        except Exception as exc:  # calamine raises several of its own error types
            raise BadRecordingError(f"cannot read Excel file: {exc}", path=str(p)) from None
        rows = [r for r in rows if any(c not in ("", None) for c in r)]
        if not rows:
            raise BadRecordingError("empty file", path=str(p))
        header = [str(h).strip() for h in rows[0]]
        body = rows[1:]
        cols = [list(c) for c in zip(*body, strict=True)] if body else [[] for _ in header]
    else:
        import pandas as pd

        try:
            df = pd.read_csv(p, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise BadRecordingError("empty file", path=str(p)) from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadRecordingError(f"cannot parse CSV: {msg}", path=str(p)) from None
        header = [str(h).strip() for h in df.columns]
        cols = [df[c].tolist() for c in df.columns]
    if not cols or len(cols[0]) == 0:
        raise BadRecordingError("no data rows", path=str(p))
    return Table(p, header, cols)


def _first_bad_float(values: list[Any]) -> int | None:
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            return i
    return None


def numeric_column(table: Table, name: str) -> np.ndarray:
    """A column as float64; empty cells become NaN; an unparseable cell is an error."""
    vals = table.raw(name)
    try:
        return np.asarray([np.nan if v is None or v == "" else v for v in vals], dtype=np.float64)
    except (TypeError, ValueError):
        i = _first_bad_float(vals)
        row = (i + 2) if i is not None else None
        cell = vals[i] if i is not None else "?"
        raise BadRecordingError(
            f"not a number: {str(cell)[:40]!r}",
            path=str(table.path),
            row=row,
            column=table.name(name),
        ) from None


def _localize(naive_ms: np.ndarray, tz: str | None) -> np.ndarray:
    """Local wall-clock ms (naive) -> UTC ms, for a zone name; identity when tz is None."""
    if not tz:
        return naive_ms
    import pandas as pd

    idx = pd.to_datetime(naive_ms, unit="ms").tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return np.asarray(idx.tz_convert("UTC").tz_localize(None).asi8 // 1_000_000, dtype=np.int64)


def time_column(table: Table, name: str, *, tz: str | None = None) -> np.ndarray:
    """Parse a time column into epoch ms (int64): epoch ms, epoch or FIT-epoch seconds,
    relative seconds/ms, ISO strings or Excel date cells. Naive strings are UTC unless ``tz``."""
    vals = table.raw(name)
    col = table.name(name)
    path = str(table.path)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and v == v for v in vals[:50]):
        v = numeric_column(table, name)
        if np.isnan(v).any():
            raise BadRecordingError(
                "empty time cell",
                path=path,
                row=int(np.flatnonzero(np.isnan(v))[0]) + 2,
                column=col,
            )
        med = float(np.median(np.abs(v)))
        if med >= 1e11:
            return np.rint(v).astype(np.int64)
        if med >= 1e8:
            if "fit" in col.lower() or med < 1.2e9:
                log.info(
                    "%s: column %r read as Garmin FIT-epoch seconds (since 1989-12-31)", path, col
                )
                return np.rint((v + FIT_EPOCH_OFFSET_S) * 1000).astype(np.int64)
            log.info("%s: column %r read as Unix epoch seconds", path, col)
            return np.rint(v * 1000).astype(np.int64)
        d = np.median(np.diff(v)) if v.size > 1 else 1.0
        if d < 1.0 and not col.lower().endswith("ms"):
            log.info("%s: column %r read as relative seconds", path, col)
            return np.rint(v * 1000).astype(np.int64)
        log.info("%s: column %r read as relative milliseconds", path, col)
        return np.rint(v).astype(np.int64)
    import pandas as pd

    try:
        idx = pd.to_datetime(pd.Series(vals, dtype=object), format="mixed")
    except (ValueError, TypeError, OverflowError):
        for i, cell in enumerate(vals):
            try:
                pd.to_datetime(cell)
            except (ValueError, TypeError, OverflowError):
                raise BadRecordingError(
                    f"not a time: {str(cell)[:40]!r}", path=path, row=i + 2, column=col
                ) from None
        raise BadRecordingError("cannot parse time column", path=path, column=col) from None
    if idx.isna().any():
        i = int(np.flatnonzero(idx.isna().to_numpy())[0])
        raise BadRecordingError("empty time cell", path=path, row=i + 2, column=col)
    if idx.dt.tz is not None:
        utc = idx.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
        return np.asarray(utc.astype("int64") // 1_000_000, dtype=np.int64)
    ms = np.asarray(idx.astype("datetime64[ns]").astype("int64") // 1_000_000, dtype=np.int64)
    return _localize(ms, tz)


def _find_time_column(table: Table) -> str:
    for c in TIME_COLUMNS:
        if table.has(c):
            return c
    for h in table.header:
        if "time" in h.lower():
            return h
    raise BadRecordingError(
        f"no time column (looked for {', '.join(TIME_COLUMNS)}; columns: "
        f"{', '.join(table.header)})",
        path=str(table.path),
    )


# --------------------------------------------------------------------------- list cells


def _list_column(table: Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of list cells ('[1, 2]' or '["1","2"]') -> (flat float64, lengths)."""
    cells = table.raw(name)
    col = table.name(name)
    path = str(table.path)
    inner: list[str] = []
    for i, c in enumerate(cells):
        s = str(c).strip() if c is not None else ""
        if len(s) < 2 or s[0] != "[" or s[-1] != "]":
            raise BadRecordingError(f"not a list: {s[:40]!r}", path=path, row=i + 2, column=col)
        inner.append(s[1:-1].replace('"', "").replace("'", ""))
    lens = np.fromiter(
        (s.count(",") + 1 if s.strip() else 0 for s in inner), dtype=np.int64, count=len(inner)
    )
    big = ",".join(s for s in inner if s.strip())
    total = int(lens.sum())
    try:
        flat = np.fromstring(big, sep=",") if total else np.empty(0)
    except ValueError:  # numpy 2: unparseable text raises
        flat = np.empty(0)
    if flat.shape[0] != total:
        for i, s in enumerate(inner):
            for tok in s.split(","):
                try:
                    float(tok)
                except ValueError:
                    raise BadRecordingError(
                        f"unparseable list element {tok.strip()[:20]!r}",
                        path=path,
                        row=i + 2,
                        column=col,
                    ) from None
        raise BadRecordingError("unparseable list cell", path=path, column=col)
    return flat, lens


# --------------------------------------------------------------------------- Garmin


_GARMIN_VALUE_COLUMNS = {
    "accel": ("calibrated_accel_x", "calibrated_accel_y", "calibrated_accel_z"),
    "gyro": ("calibrated_gyro_x", "calibrated_gyro_y", "calibrated_gyro_z"),
}


def _garmin_row_times(table: Table, tz: str | None) -> np.ndarray:
    """Epoch ms of each row: timestamp (local string) + timestamp_ms."""
    import datetime as dt

    path = str(table.path)
    col = table.name("timestamp")
    cache: dict[Any, int] = {}
    out = np.empty(table.n_rows, dtype=np.int64)
    for i, cell in enumerate(table.raw("timestamp")):
        ms = cache.get(cell)
        if ms is None:
            try:
                if isinstance(cell, dt.datetime):
                    d = cell
                elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                    d = dt.datetime.fromtimestamp(
                        float(cell) / (1000 if cell > 1e11 else 1), tz=dt.UTC
                    )
                else:
                    s = str(cell).strip()
                    try:
                        d = dt.datetime.strptime(s, GARMIN_TIME_FORMAT)
                    except ValueError:
                        d = dt.datetime.fromisoformat(s)
            except (ValueError, OverflowError, OSError):
                raise BadRecordingError(
                    f"not a time: {str(cell)[:40]!r}", path=path, row=i + 2, column=col
                ) from None
            if d.tzinfo is None:
                d = d.replace(tzinfo=dt.UTC)
            ms = round(d.timestamp() * 1000)
            cache[cell] = ms
        out[i] = ms
    if tz:
        out = _localize(out, tz)
    if table.has("timestamp_ms"):
        extra = numeric_column(table, "timestamp_ms")
        if np.isnan(extra).any():
            i = int(np.flatnonzero(np.isnan(extra))[0])
            raise BadRecordingError(
                "empty cell", path=path, row=i + 2, column=table.name("timestamp_ms")
            )
        extra_i = np.rint(extra).astype(np.int64)
        absolute = extra_i >= 10**11  # some exports hold full epoch ms here
        out = np.where(absolute, extra_i, out + extra_i)
    return out


def _garmin_sensor(table: Table) -> str:
    for sensor, cols in _GARMIN_VALUE_COLUMNS.items():
        if table.has(cols[0]):
            return sensor
    name = table.path.name.lower()
    if "acc" in name:
        return "accel"
    if "gyr" in name:
        return "gyro"
    raise BadRecordingError(
        "cannot tell accelerometer from gyroscope (no calibrated_accel_*/calibrated_gyro_* "
        "columns, no 'acc'/'gyr' in the file name)",
        path=str(table.path),
    )


def read_garmin_file(
    path: str | Path,
    *,
    unit: str | None = None,
    tz: str | None = None,
    repairs: dict[str, int] | None = None,
    table: Table | None = None,
    units_in: dict[str, str] | None = None,
) -> SensorSeries:
    """One Garmin-style export file (accelerometer or gyroscope) as a SensorSeries."""
    tab = table if table is not None else load_table(path)
    sensor = _garmin_sensor(tab)
    names = _GARMIN_VALUE_COLUMNS[sensor]
    if not tab.has(names[0]) and tab.has("x"):
        names = ("x", "y", "z")
    for c in ("timestamp", "sample_time_offset", *names):
        tab.raw(c)  # raises naming the missing column
    row_ms = _garmin_row_times(tab, tz)
    offs, n_off = _list_column(tab, "sample_time_offset")
    vals = []
    for c in names:
        flat, n = _list_column(tab, c)
        if not np.array_equal(n, n_off):
            i = int(np.flatnonzero(n != n_off)[0])
            raise BadRecordingError(
                f"list has {n[i]} values but sample_time_offset has {n_off[i]}",
                path=str(tab.path),
                row=i + 2,
                column=tab.name(c),
            )
        vals.append(flat)
    t = np.repeat(row_ms, n_off) + np.rint(offs).astype(np.int64)
    rows = np.repeat(np.arange(2, tab.n_rows + 2, dtype=np.int64), n_off)
    xyz = np.stack(vals, axis=1)
    if unit is None and names[0].startswith("calibrated_"):
        if sensor == "accel":
            unit = units.detect_accel_unit(xyz)
        else:
            # Garmin documents calibrated_gyro_* in deg/s. Detection cannot tell a resting
            # wrist in deg/s from motion in rad/s, so the documented unit wins; a
            # disagreement is logged for the user to check (and force with a flag).
            unit = "deg/s"
            guess = units.detect_gyro_unit(xyz)
            if guess != unit:
                log.warning(
                    "%s: calibrated_gyro_* is documented as deg/s but the values look like %s "
                    "(a wrist mostly at rest?); reading deg/s, force the unit if that is wrong",
                    tab.path,
                    guess,
                )
    return make_series(
        sensor,
        t,
        xyz,
        unit=unit,
        path=str(tab.path),
        repairs=repairs,
        units_in=units_in,
        rows=rows,
        columns=[tab.name(c) for c in names],
        rows_are_batches=True,
    )


def read_labels_csv(path: str | Path) -> tuple[LabelSpan, ...]:
    """A labels sidecar: CSV with start_ms,end_ms,label (epoch ms, [start, end))."""
    tab = load_table(path)
    start = numeric_column(tab, "start_ms")
    end = numeric_column(tab, "end_ms")
    lab = tab.raw("label")
    spans = []
    for i, (a, b, name) in enumerate(zip(start, end, lab, strict=True)):
        if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
            raise BadRecordingError(
                "label span needs start_ms < end_ms", path=str(path), row=i + 2, column="end_ms"
            )
        spans.append(LabelSpan(int(a), int(b), str(name)))
    return tuple(spans)


def _sidecar_for(path: Path) -> Path | None:
    name = path.name
    for marker in ("-accelerometer_data", "-gyroscope_data"):
        if marker in name:
            cand = path.with_name(name.split(marker)[0] + "-labels.csv")
            if cand.is_file():
                return cand
    return None


def read_garmin_pair(
    accel_path: str | Path,
    gyro_path: str | Path,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
    labels_path: str | Path | None = None,
) -> Recording:
    """The Garmin-style Excel pair (plus ``<stamp>-labels.csv`` next to it, if present)."""
    repairs: dict[str, int] = {}
    units_in: dict[str, str] = {}
    acc = read_garmin_file(accel_path, unit=accel_unit, tz=tz, repairs=repairs, units_in=units_in)
    gyr = read_garmin_file(gyro_path, unit=gyro_unit, tz=tz, repairs=repairs, units_in=units_in)
    if acc.sensor != "accel" or gyr.sensor != "gyro":
        raise BadRecordingError(
            f"expected an accelerometer and a gyroscope file, got {acc.sensor} and {gyr.sensor}",
            path=str(accel_path),
        )
    lp = Path(labels_path) if labels_path is not None else _sidecar_for(Path(accel_path))
    labels = read_labels_csv(lp) if lp is not None else ()
    return Recording(
        accel=acc,
        gyro=gyr,
        labels=labels,
        source=str(accel_path),
        meta={
            "format": "garmin-excel",
            "files": [str(accel_path), str(gyro_path)] + ([str(lp)] if lp else []),
            "repairs": repairs,
            "units_in": units_in,
        },
    )


# --------------------------------------------------------------------------- flat tables

_SIX = ("ax", "ay", "az", "gx", "gy", "gz")
LABEL_COLUMNS = ("activity", "label", "class")
SUBJECT_COLUMNS = ("user", "subject")


def _six_columns(table: Table) -> list[str] | None:
    for suffix in ("", "_w"):
        names = [c + suffix for c in _SIX]
        if all(table.has(n) for n in names):
            return names
    return None


def sniff_format(table: Table) -> str:
    """'garmin' | 'flat6' | 'adamsense' | 'flat3', from the columns."""
    if table.has("sample_time_offset"):
        return "garmin"
    six = _six_columns(table)
    if six is not None:
        if any(table.has(c) for c in LABEL_COLUMNS) and any(table.has(c) for c in SUBJECT_COLUMNS):
            return "adamsense"
        return "flat6"
    if all(table.has(c) for c in ("x", "y", "z")):
        return "flat3"
    raise BadRecordingError(
        "unknown layout: expected Garmin list columns (sample_time_offset, ...), Ax..Gz "
        f"(optionally Ax_w..Gz_w) or x, y, z; columns: {', '.join(table.header)}",
        path=str(table.path),
    )


def _labels_from_column(t: np.ndarray, labels: list[Any]) -> tuple[LabelSpan, ...]:
    """Runs of equal per-sample labels -> spans [first t, next run's first t)."""
    if t.shape[0] == 0:
        return ()
    lab = np.asarray(["" if v is None or v != v else str(v).strip() for v in labels], dtype=object)
    change = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [t.shape[0]]))
    step = int(np.median(np.diff(t))) if t.shape[0] > 1 else GRID_MS
    spans = []
    for a, b in zip(starts, ends, strict=True):
        name = lab[a]
        if not name:
            continue
        end = int(t[b]) if b < t.shape[0] else int(t[-1]) + step
        spans.append(LabelSpan(int(t[a]), end, name))
    return tuple(spans)


def _flat_sensor(
    table: Table,
    sensor: str,
    cols: Sequence[str],
    t: np.ndarray,
    unit: str | None,
    repairs: dict[str, int],
    mask: np.ndarray | None = None,
    units_in: dict[str, str] | None = None,
) -> SensorSeries:
    xyz = np.stack([numeric_column(table, c) for c in cols], axis=1)
    rows = np.arange(2, table.n_rows + 2, dtype=np.int64)
    tt = t
    if mask is not None:
        xyz, rows, tt = xyz[mask], rows[mask], t[mask]
    return make_series(
        sensor,
        tt,
        xyz,
        unit=unit,
        path=str(table.path),
        repairs=repairs,
        units_in=units_in,
        rows=rows,
        columns=[table.name(c) for c in cols],
    )


def _sorted_labels(t: np.ndarray, lab: list[Any]) -> tuple[LabelSpan, ...]:
    order = np.argsort(t, kind="stable")
    return _labels_from_column(t[order], [lab[i] for i in order])


def read_flat_table(
    path: str | Path,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
    table: Table | None = None,
) -> Recording:
    """One per-sample table with a time column and Ax..Gz (or Ax_w..Gz_w)."""
    tab = table if table is not None else load_table(path)
    six = _six_columns(tab)
    if six is None:
        raise BadRecordingError("missing column Ax..Gz", path=str(tab.path), column="Ax")
    repairs: dict[str, int] = {}
    units_in: dict[str, str] = {}
    t = time_column(tab, _find_time_column(tab), tz=tz)
    acc = _flat_sensor(tab, "accel", six[:3], t, accel_unit, repairs, units_in=units_in)
    gyr = _flat_sensor(tab, "gyro", six[3:], t, gyro_unit, repairs, units_in=units_in)
    labels: tuple[LabelSpan, ...] = ()
    for c in LABEL_COLUMNS:
        if tab.has(c):
            labels = _sorted_labels(t, tab.raw(c))
            break
    return Recording(
        accel=acc,
        gyro=gyr,
        labels=labels,
        source=str(tab.path),
        meta={"format": "flat", "files": [str(tab.path)], "repairs": repairs, "units_in": units_in},
    )


def read_adamsense(
    path: str | Path,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
) -> list[Recording]:
    """An ADAM-Sense table (timestamp, Ax_w..Gz_w, activity, User): one Recording per User."""
    tab = load_table(path)
    six = _six_columns(tab)
    if six is None:
        raise BadRecordingError("missing column Ax_w..Gz_w", path=str(tab.path), column="Ax_w")
    ucol = next((c for c in SUBJECT_COLUMNS if tab.has(c)), None)
    lcol = next((c for c in LABEL_COLUMNS if tab.has(c)), None)
    if ucol is None:
        raise BadRecordingError("missing column", path=str(tab.path), column="User")
    if lcol is None:
        raise BadRecordingError("missing column", path=str(tab.path), column="activity")
    t = time_column(tab, _find_time_column(tab), tz=tz)
    users = np.asarray([str(u).strip() for u in tab.raw(ucol)], dtype=object)
    lab = tab.raw(lcol)
    out = []
    for user in dict.fromkeys(users.tolist()):
        m = users == user
        repairs: dict[str, int] = {}
        units_in: dict[str, str] = {}
        acc = _flat_sensor(tab, "accel", six[:3], t, accel_unit, repairs, m, units_in=units_in)
        gyr = _flat_sensor(tab, "gyro", six[3:], t, gyro_unit, repairs, m, units_in=units_in)
        idx = np.flatnonzero(m)
        out.append(
            Recording(
                accel=acc,
                gyro=gyr,
                labels=_sorted_labels(t[idx], [lab[i] for i in idx]),
                subject=str(user),
                source=f"{tab.path}#{user}",
                meta={
                    "format": "adamsense",
                    "files": [str(tab.path)],
                    "repairs": repairs,
                    "units_in": units_in,
                },
            )
        )
    return out


def _sensor_of_xyz_file(table: Table) -> str:
    name = table.path.name.lower()
    if "acc" in name:
        return "accel"
    if "gyr" in name:
        return "gyro"
    xyz = np.stack([numeric_column(table, c) for c in "xyz"], axis=1)
    med = float(np.nanmedian(np.linalg.norm(xyz, axis=1)))
    # gravity: ~1, ~9.8 or ~1000 with little spread; a gyroscope's magnitude varies widely
    mag = np.linalg.norm(xyz, axis=1)
    spread = float(np.nanstd(mag)) / max(med, 1e-9)
    sensor = (
        "accel" if spread < 0.5 and any(abs(med / g - 1) < 0.3 for g in (1, 9.8, 1000)) else "gyro"
    )
    log.info("%s: no sensor name in the file name; guessed %s from the values", table.path, sensor)
    return sensor


def read_xyz_pair(
    path_a: str | Path,
    path_b: str | Path,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
) -> Recording:
    """Two flat files with a time column and x, y, z, one per sensor (either order)."""
    repairs: dict[str, int] = {}
    units_in: dict[str, str] = {}
    series: dict[str, SensorSeries] = {}
    for p in (path_a, path_b):
        tab = load_table(p)
        sensor = _sensor_of_xyz_file(tab)
        if sensor in series:
            raise BadRecordingError(f"two {sensor} files; expected one per sensor", path=str(p))
        t = time_column(tab, _find_time_column(tab), tz=tz)
        unit = accel_unit if sensor == "accel" else gyro_unit
        series[sensor] = _flat_sensor(
            tab, sensor, ("x", "y", "z"), t, unit, repairs, units_in=units_in
        )
    return Recording(
        accel=series["accel"],
        gyro=series["gyro"],
        source=str(path_a),
        meta={
            "format": "flat-xyz",
            "files": [str(path_a), str(path_b)],
            "repairs": repairs,
            "units_in": units_in,
        },
    )


def _partner(path: Path) -> Path | None:
    name = path.name
    for a, b in (("accelerometer", "gyroscope"), ("gyroscope", "accelerometer")):
        if a in name:
            cand = path.with_name(name.replace(a, b))
            if cand.is_file():
                return cand
    return None


def read_recording(
    paths: Sequence[str | Path] | str | Path,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
) -> Recording:
    """Read one recording in any supported layout, detected from the files' columns.

    ``paths``: one flat table (Ax..Gz), or a Garmin file (its partner is found by name), or
    two files (a Garmin pair or one x,y,z file per sensor), optionally plus a labels CSV.
    Units are detected unless given; ``tz`` names the zone of naive local times (else UTC).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    ps = [Path(p) for p in paths]
    label_files = [p for p in ps if p.name.endswith("labels.csv")]
    data = [p for p in ps if p not in label_files]
    if not data:
        raise BadRecordingError("no recording files given")
    if len(label_files) > 1 or len(data) > 2:
        raise BadRecordingError(
            "expected one flat table, or two sensor files, plus at most one labels CSV"
        )
    first = load_table(data[0])
    fmt = sniff_format(first)
    if fmt == "garmin":
        if len(data) == 1:
            other = _partner(data[0])
            if other is None:
                raise BadRecordingError(
                    "Garmin export needs both the accelerometer and the gyroscope file",
                    path=str(data[0]),
                )
            data.append(other)
        tabs = [first, load_table(data[1])]
        sensors = [_garmin_sensor(t) for t in tabs]
        if sorted(sensors) != ["accel", "gyro"]:
            raise BadRecordingError(
                f"expected an accelerometer and a gyroscope file, got {' and '.join(sensors)}",
                path=str(data[1]),
            )
        ia = sensors.index("accel")
        acc_tab, gyr_tab = tabs[ia], tabs[1 - ia]
        repairs: dict[str, int] = {}
        units_in: dict[str, str] = {}
        acc = read_garmin_file(
            acc_tab.path, unit=accel_unit, tz=tz, repairs=repairs, units_in=units_in, table=acc_tab
        )
        gyr = read_garmin_file(
            gyr_tab.path, unit=gyro_unit, tz=tz, repairs=repairs, units_in=units_in, table=gyr_tab
        )
        lp = label_files[0] if label_files else _sidecar_for(acc_tab.path)
        return Recording(
            accel=acc,
            gyro=gyr,
            labels=read_labels_csv(lp) if lp else (),
            source=str(acc_tab.path),
            meta={
                "format": "garmin-excel",
                "files": [str(acc_tab.path), str(gyr_tab.path)] + ([str(lp)] if lp else []),
                "repairs": repairs,
                "units_in": units_in,
            },
        )
    if fmt in ("flat6", "adamsense"):
        if len(data) != 1:
            raise BadRecordingError(
                "a table with Ax..Gz holds both sensors; give it alone", path=str(data[1])
            )
        if fmt == "adamsense":
            users = {
                str(u).strip() for u in first.raw(next(c for c in SUBJECT_COLUMNS if first.has(c)))
            }
            if len(users) > 1:
                raise BadRecordingError(
                    f"ADAM-Sense table with {len(users)} users: use read_adamsense "
                    "(one recording per user)",
                    path=str(first.path),
                )
        rec = read_flat_table(
            first.path, accel_unit=accel_unit, gyro_unit=gyro_unit, tz=tz, table=first
        )
    else:
        if len(data) != 2:
            raise BadRecordingError(
                "x, y, z tables come one per sensor: give both files", path=str(data[0])
            )
        rec = read_xyz_pair(data[0], data[1], accel_unit=accel_unit, gyro_unit=gyro_unit, tz=tz)
    if label_files:
        rec = Recording(
            accel=rec.accel,
            gyro=rec.gyro,
            labels=read_labels_csv(label_files[0]),
            subject=rec.subject,
            source=rec.source,
            meta=rec.meta,
        )
    return rec
