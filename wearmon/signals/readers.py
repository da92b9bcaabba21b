"""Readers for every recording format wearmon accepts, all returning :class:`Recording`.

Formats (DESIGN.md section 4):

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
) -> SensorSeries:
    """Validate, repair and convert raw samples of one sensor into a canonical SensorSeries.

    Repairs (counted in ``repairs``, logged): samples with NaN dropped; out-of-order samples
    sorted; duplicate timestamps dropped (the first arrival is kept). ``unit`` None: detected.
    ``rows`` gives the source row of each sample for error messages.
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
    return SensorSeries(sensor=sensor, t_ms=t, xyz=out, unit=canon)


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
