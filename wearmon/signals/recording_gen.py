"""Realistic session recordings in the Garmin Excel layout, built from real seglearn data.

One subject's real exercises (seglearn watch data, 50 Hz) are strung into a session with
rest in between, resampled to each sensor's own jittered ~100 Hz native clock, converted to
the app's units (accelerometer milli-g, gyroscope deg/s) and written as the two Excel files
a wearable app exports (rows of ~25 samples with list cells), plus a labels sidecar:

- ``<stamp>-accelerometer_data.xlsx``: timestamp, timestamp_ms, sample_time_offset,
  calibrated_accel_x, calibrated_accel_y, calibrated_accel_z
- ``<stamp>-gyroscope_data.xlsx``: the same with calibrated_gyro_x|y|z
- ``<stamp>-labels.csv``: start_ms,end_ms,label (epoch ms, exercise segments; rest unlabeled)
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wearmon.errors import BadRecordingError
from wearmon.signals.types import GRID_MS

log = logging.getLogger(__name__)

DEFAULT_START = "2025-03-24T07:52:19+00:00"
TIMESTAMP_FORMAT = "%m/%d/%Y, %I:%M:%S %p"
STAMP_FORMAT = "%Y-%m-%d-%H-%M-%S"
REST_LABEL = "REST"


def _session_source(
    rng: np.random.Generator,
    subject: str | None,
    rest_s: float,
    max_exercises: int | None,
    duration_s: float | None,
    exercises: Sequence[int] | None = None,
) -> tuple[str, np.ndarray, list[tuple[int, int, str]]]:
    """The session at 50 Hz: (subject, samples (N, 6) in g / rad/s, [(start, end, label)] ms)."""
    from wearmon.signals.readers import seglearn_watch_path

    data = np.load(seglearn_watch_path(), allow_pickle=True).item()
    subjects = np.asarray(data["subject"]).astype(int)
    names = [str(n) for n in data["y_labels"]]
    avail = sorted(set(subjects.tolist()))
    if subject is None:
        subj = int(rng.choice(avail))
    else:
        try:
            subj = int(subject)
        except ValueError:
            subj = -1
        if subj not in avail:
            raise BadRecordingError(f"unknown seglearn subject {subject!r}; use one of {avail}")
    idx = np.flatnonzero(subjects == subj)
    if exercises is not None:
        bad = [e for e in exercises if not 0 <= e < len(idx)]
        if bad:
            raise BadRecordingError(f"subject {subj} has exercises 0..{len(idx) - 1}, not {bad[0]}")
        idx = idx[list(exercises)]
    order = list(rng.permutation(idx))
    if max_exercises is not None:
        order = order[: max(1, max_exercises)]
    rest_n = max(0, round(rest_s * 1000 / GRID_MS))
    parts: list[np.ndarray] = []
    spans: list[tuple[int, int, str]] = []
    pos = 0
    k = 0
    target = None if duration_s is None else round(duration_s * 1000 / GRID_MS)
    while True:
        if k >= len(order):
            if target is None or pos >= target:
                break
            order += list(rng.permutation(idx))
        i = int(order[k])
        k += 1
        x = np.asarray(data["X"][i], dtype=np.float64)[:, :6]
        if rest_n:
            g = x[:25, :3].mean(axis=0)
            g = g / max(np.linalg.norm(g), 1e-6)
            rest = np.zeros((rest_n, 6))
            rest[:, :3] = g + rng.normal(0, 0.004, size=(rest_n, 3))
            rest[:, 3:] = rng.normal(0, 0.006, size=(rest_n, 3))
            parts.append(rest)
            pos += rest_n
        parts.append(x)
        spans.append((pos * GRID_MS, (pos + x.shape[0]) * GRID_MS, names[int(data["y"][i])]))
        pos += x.shape[0]
        if target is not None and pos >= target:
            break
    src = np.concatenate(parts)
    return str(subj), src, spans


def _native_times(
    rng: np.random.Generator, dur_ms: int, rate_hz: float, jitter_ms: float
) -> np.ndarray:
    mean = 1000.0 / rate_hz
    n = int(dur_ms / mean * 1.1) + 10
    d = np.clip(np.rint(rng.normal(mean, jitter_ms, size=n)), 1, None).astype(np.int64)
    t = rng.integers(0, 5) + np.concatenate(([0], np.cumsum(d)))
    return t[t <= dur_ms]


def _fmt_list(vals: np.ndarray, decimals: int, quoted: bool) -> str:
    if quoted:
        return "[" + ",".join(f'"{v}"' for v in vals.tolist()) + "]"
    if decimals == 0:
        return "[" + ", ".join(str(int(v)) for v in vals.tolist()) + "]"
    return "[" + ", ".join(f"{v:.{decimals}f}" for v in vals.tolist()) + "]"


def _write_sensor_xlsx(
    path: Path,
    rng: np.random.Generator,
    t_abs: np.ndarray,
    xyz: np.ndarray,
    prefix: str,
    decimals: int,
) -> int:
    import xlsxwriter

    n = t_abs.shape[0]
    sizes = rng.integers(23, 28, size=n // 23 + 2)
    cuts = np.concatenate(([0], np.cumsum(sizes)))
    bounds = [*cuts[cuts < n].tolist(), n]
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("data")
    header = ["timestamp", "timestamp_ms", "sample_time_offset"] + [
        f"calibrated_{prefix}_{a}" for a in "xyz"
    ]
    ws.write_row(0, 0, header)
    rows = 0
    for r, (a, b) in enumerate(itertools.pairwise(bounds)):
        t0 = int(t_abs[a])
        sec = dt.datetime.fromtimestamp(t0 // 1000, tz=dt.UTC)
        offs = t_abs[a:b] - t0
        ws.write_row(
            r + 1,
            0,
            [
                sec.strftime(TIMESTAMP_FORMAT),
                t0 % 1000,
                _fmt_list(offs, 0, quoted=True),
                _fmt_list(xyz[a:b, 0], decimals, False),
                _fmt_list(xyz[a:b, 1], decimals, False),
                _fmt_list(xyz[a:b, 2], decimals, False),
            ],
        )
        rows += 1
    wb.close()
    return rows


def make_recording(
    out_dir: str | Path,
    *,
    subject: str | int | None = None,
    seed: int = 0,
    rest_s: float = 10.0,
    start: str | dt.datetime = DEFAULT_START,
    rate_hz: float = 100.0,
    jitter_ms: float = 1.5,
    max_exercises: int | None = None,
    duration_s: float | None = None,
    exercises: Sequence[int] | None = None,
) -> list[Path]:
    """Write a Garmin-style Excel pair + labels sidecar; returns [accel, gyro, labels] paths.

    ``subject`` is a seglearn subject (1..10; random by ``seed`` when None); ``max_exercises``
    keeps the session short (tests), ``duration_s`` repeats the subject's exercises until the
    session is that long (benchmarks), ``exercises`` keeps only these of the subject's
    exercises (positions in the data set's order: sessions of one person with no exercise in
    common). Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    subj, src, spans = _session_source(
        rng,
        None if subject is None else str(subject),
        rest_s,
        max_exercises,
        duration_s,
        exercises,
    )
    t0 = start if isinstance(start, dt.datetime) else dt.datetime.fromisoformat(start)
    if t0.tzinfo is None:
        t0 = t0.replace(tzinfo=dt.UTC)
    base_ms = int(t0.timestamp() * 1000)
    src_t = GRID_MS * np.arange(src.shape[0], dtype=np.float64)
    dur = int(src_t[-1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = t0.astimezone(dt.UTC).strftime(STAMP_FORMAT)
    paths = []
    for sensor, prefix, cols, factor, noise, dec in (
        ("accelerometer", "accel", slice(0, 3), 1000.0, 3.0, 1),  # g -> milli-g
        ("gyroscope", "gyro", slice(3, 6), 180.0 / np.pi, 0.3, 2),  # rad/s -> deg/s
    ):
        tn = _native_times(rng, dur, rate_hz, jitter_ms)
        vals = np.stack([np.interp(tn, src_t, src[:, c]) for c in range(cols.start, cols.stop)], 1)
        vals = vals * factor + rng.normal(0, noise, size=vals.shape)
        path = out / f"{stamp}-{sensor}_data.xlsx"
        rows = _write_sensor_xlsx(path, rng, base_ms + tn, vals, prefix, dec)
        log.info("wrote %s: %d samples in %d rows", path, tn.shape[0], rows)
        paths.append(path)
    lab = out / f"{stamp}-labels.csv"
    with lab.open("w", encoding="utf-8") as fh:
        fh.write("start_ms,end_ms,label\n")
        for a, b, name in spans:
            fh.write(f"{base_ms + a},{base_ms + b},{name}\n")
    paths.append(lab)
    log.info("session of subject %s: %d exercises, %.0f s", subj, len(spans), dur / 1000)
    return paths
