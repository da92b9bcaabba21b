"""``wearmon data analyze``: what a recording holds, as JSON, PNG plots and a readable summary.

Reports the detected format, columns, duration, each sensor's native rate and jitter, gaps,
the unit guess, labels and their class distribution, per-channel statistics (canonical
units) and how many 50 Hz windows the recording yields.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wearmon.signals.readers import load_table, read_recording
from wearmon.signals.types import CHANNELS, Recording, SensorSeries
from wearmon.signals.windows import window_recording

log = logging.getLogger(__name__)


def _sensor_summary(s: SensorSeries, max_gap_ms: int) -> dict[str, Any]:
    t = s.t_ms
    d = np.diff(t).astype(np.float64)
    out: dict[str, Any] = {
        "samples": len(s),
        "start_ms": int(t[0]),
        "end_ms": int(t[-1]),
        "unit": s.unit,
    }
    if d.size:
        med = float(np.median(d))
        out.update(
            rate_hz=round(1000.0 / med, 3) if med > 0 else None,
            mean_rate_hz=round((d.size * 1000.0) / float(t[-1] - t[0]), 3),
            dt_median_ms=med,
            jitter_ms=round(float(np.std(d[d <= max_gap_ms])) if (d <= max_gap_ms).any() else 0, 3),
            dt_p5_p95_ms=[float(np.percentile(d, 5)), float(np.percentile(d, 95))],
            gaps=int((d > max_gap_ms).sum()),
            longest_gap_ms=int(d.max()),
        )
    return out


def summarize(rec: Recording, *, max_gap_ms: int = 100) -> dict[str, Any]:
    """The analysis of one recording as a JSON-ready dict."""
    files = [str(f) for f in rec.meta.get("files", [rec.source])]  # type: ignore[attr-defined]
    columns: dict[str, list[str]] = {}
    for f in files:
        try:
            columns[f] = load_table(f).header
        except Exception:
            columns[f] = []
    acc, gyr = rec.accel, rec.gyro
    start = min(int(acc.t_ms[0]), int(gyr.t_ms[0]))
    end = max(int(acc.t_ms[-1]), int(gyr.t_ms[-1]))
    stats = {}
    for k, name in enumerate(CHANNELS):
        v = acc.xyz[:, k] if k < 3 else gyr.xyz[:, k - 3]
        stats[name] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "min": float(v.min()),
            "max": float(v.max()),
            "p1": float(np.percentile(v, 1)),
            "p99": float(np.percentile(v, 99)),
        }
    labels: dict[str, float] = {}
    for span in rec.labels:
        labels[span.label] = labels.get(span.label, 0.0) + (span.end_ms - span.start_ms) / 1000.0
    res = window_recording(rec)
    win_classes: dict[str, int] = {}
    if res.windows.labels is not None:
        names, counts = np.unique(res.windows.labels.astype(str), return_counts=True)
        win_classes = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
    return {
        "format": rec.meta.get("format", "unknown"),
        "files": files,
        "columns": columns,
        "subject": rec.subject,
        "start_ms": start,
        "end_ms": end,
        "duration_s": round((end - start) / 1000.0, 3),
        "units_detected": rec.meta.get("units_in", {}),
        "units_canonical": {"accel": acc.unit, "gyro": gyr.unit},
        "sensors": {
            "accel": _sensor_summary(acc, max_gap_ms),
            "gyro": _sensor_summary(gyr, max_gap_ms),
        },
        "repairs": rec.meta.get("repairs", {}),
        "labels": {
            "present": bool(rec.labels),
            "spans": len(rec.labels),
            "seconds_per_class": labels,
        },
        "channels": stats,
        "windows": {
            "count": len(res.windows),
            "skipped": res.skipped,
            "per_class": win_classes,
        },
    }


def write_plots(rec: Recording, summary: dict[str, Any], out: Path) -> list[Path]:
    """signals.png, rate_hist.png and (with labels) classes.png under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    t0 = summary["start_ms"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for ax, s, names in ((axes[0], rec.accel, CHANNELS[:3]), (axes[1], rec.gyro, CHANNELS[3:])):
        step = max(1, len(s) // 20_000)
        tt = (s.t_ms[::step] - t0) / 1000.0
        for k, n in enumerate(names):
            ax.plot(tt, s.xyz[::step, k], lw=0.5, label=n)
        ax.set_ylabel(s.unit)
        ax.legend(loc="upper right", fontsize=8)
    for span in rec.labels:
        for ax in axes:
            ax.axvspan((span.start_ms - t0) / 1000, (span.end_ms - t0) / 1000, alpha=0.08)
        axes[0].text(
            (span.start_ms - t0) / 1000, axes[0].get_ylim()[1], span.label, fontsize=7, va="top"
        )
    axes[1].set_xlabel("time since start (s)")
    fig.suptitle("signals (canonical units)")
    fig.tight_layout()
    p = out / "signals.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(7, 4))
    for s in (rec.accel, rec.gyro):
        d = np.diff(s.t_ms)
        d = d[d <= np.percentile(d, 99.5)] if d.size else d
        ax.hist(d, bins=60, alpha=0.6, label=f"{s.sensor} (median {np.median(d):.1f} ms)")
    ax.set_xlabel("sample interval (ms)")
    ax.set_ylabel("count")
    ax.legend()
    fig.tight_layout()
    p = out / "rate_hist.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)

    if rec.labels:
        per = summary["labels"]["seconds_per_class"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(per), list(per.values()))
        ax.set_ylabel("seconds")
        ax.set_title("class distribution")
        fig.tight_layout()
        p = out / "classes.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def analyze(
    files: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    accel_unit: str | None = None,
    gyro_unit: str | None = None,
    tz: str | None = None,
    max_gap_ms: int = 100,
) -> dict[str, Any]:
    """Read ``files`` as one recording, summarise it; with ``out``, write summary.json + PNGs."""
    rec = read_recording(list(files), accel_unit=accel_unit, gyro_unit=gyro_unit, tz=tz)
    summary = summarize(rec, max_gap_ms=max_gap_ms)
    if out is not None:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        plots = write_plots(rec, summary, o)
        summary["plots"] = [str(p) for p in plots]
        (o / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        summary["summary_json"] = str(o / "summary.json")
    return summary


def render(summary: dict[str, Any]) -> Any:
    """A rich renderable of the summary."""
    from rich.console import Group
    from rich.table import Table

    head = Table(show_header=False, box=None)
    head.add_row("format", str(summary["format"]))
    for f, cols in summary["columns"].items():
        head.add_row(Path(f).name, ", ".join(cols))
    head.add_row("duration", f"{summary['duration_s']:.1f} s")
    units = summary["units_detected"]
    head.add_row(
        "units",
        ", ".join(f"{k}: {v} -> {summary['units_canonical'][k]}" for k, v in units.items())
        or str(summary["units_canonical"]),
    )
    if summary["repairs"]:
        head.add_row("repairs", ", ".join(f"{k}={v}" for k, v in summary["repairs"].items()))
    lab = summary["labels"]
    if lab["present"]:
        head.add_row(
            "labels",
            f"{lab['spans']} spans: "
            + ", ".join(f"{k} {v:.0f}s" for k, v in lab["seconds_per_class"].items()),
        )
    else:
        head.add_row("labels", "none")
    w = summary["windows"]
    head.add_row("windows", f"{w['count']} of 200x6 (skipped {w['skipped']})")

    sens = Table(title="sensors")
    for c in (
        "sensor",
        "samples",
        "rate Hz",
        "jitter ms",
        "dt p5-p95 ms",
        "gaps",
        "longest gap ms",
    ):
        sens.add_column(c)
    for name, s in summary["sensors"].items():
        sens.add_row(
            name,
            str(s["samples"]),
            str(s.get("rate_hz")),
            str(s.get("jitter_ms")),
            "-".join(f"{v:g}" for v in s.get("dt_p5_p95_ms", [])),
            str(s.get("gaps")),
            str(s.get("longest_gap_ms")),
        )
    ch = Table(title="channels (canonical units)")
    for c in ("channel", "mean", "std", "min", "max", "p1", "p99"):
        ch.add_column(c)
    for name, st in summary["channels"].items():
        ch.add_row(name, *(f"{st[k]:.3f}" for k in ("mean", "std", "min", "max", "p1", "p99")))
    parts: list[Any] = [head, sens, ch]
    if "plots" in summary:
        parts.append("plots: " + ", ".join(summary["plots"]))
        parts.append("summary: " + summary["summary_json"])
    return Group(*parts)
