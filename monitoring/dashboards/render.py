"""``wearmon dashboards render``: draw each dashboard's panels from the live Prometheus and
Redis into one PNG per dashboard (matplotlib), so a person can see what the dashboards show
without a Grafana server. A panel without data says "No data", as Grafana would."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring.dashboards.generate import builders, dashboard_json
from monitoring.dashboards.live import Prometheus, Result, Series, Window, run_redis
from monitoring.dashboards.queries import metric_names, panels, queries
from wearmon.errors import DashboardQueryError

log = logging.getLogger(__name__)
COLS = 3
TIME_FMT = "%H:%M:%S"


@dataclass
class PanelView:
    title: str
    kind: str
    unit: str
    decimals: int | None = None
    keep: list[str] = field(default_factory=list)  # the panel's "organize" fields, in order
    rename: dict[str, str] = field(default_factory=dict)  # field -> name shown ("organize")
    units: dict[str, str] = field(default_factory=dict)  # name shown -> unit (overrides)
    results: list[Result] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)

    @property
    def has_data(self) -> bool:
        return any(r.has_data and r.rows != [{"value": "0"}] for r in self.results)


def collect(
    name: str, prom: Prometheus, redis_client: Any, window: Window, variables: dict[str, str]
) -> list[PanelView]:
    """Every panel of a dashboard with what its queries return now."""
    dash = dashboard_json(name)
    views: dict[str, PanelView] = {}
    for p in panels(dash):
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        organize = [t["options"] for t in p.get("transformations", []) if t["id"] == "organize"]
        keep = [name for o in organize for name in o.get("indexByName", {})]
        rename = {k: v for o in organize for k, v in o.get("renameByName", {}).items()}
        units = {
            str(o["matcher"]["options"]): str(prop["value"])
            for o in p.get("fieldConfig", {}).get("overrides", [])
            if o["matcher"]["id"] == "byName"
            for prop in o["properties"]
            if prop["id"] == "unit"
        }
        views[p["title"]] = PanelView(
            p["title"],
            p["type"],
            defaults.get("unit", ""),
            _int(defaults.get("decimals")),
            keep,
            rename,
            units,
        )
    for q in queries(name, dash):
        v = views[q.panel]
        if q.is_prometheus:
            v.metrics |= metric_names(str(q.target["expr"]))
            v.results.append(prom.run(q, window))
        elif redis_client is not None:
            v.results.append(run_redis(redis_client, q, variables))
    return list(views.values())


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    """A value as Grafana shows it in ``unit`` (decimals apply to the shown number)."""
    if decimals is not None and unit not in ("s", "percentunit", "dateTimeFromNow"):
        return f"{value:.{decimals}f}"
    if unit == "s":
        if decimals is not None:
            return f"{value:.{decimals}f} s"
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f} %"
    if unit in ("wps", "ops"):
        return f"{value:.1f}/s"
    if unit == "m":
        return f"{value:.1f} min"
    if unit == "dateTimeFromNow":
        ago = dt.datetime.now(dt.UTC).timestamp() - value / 1000
        return f"{ago:.0f} s ago"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _times(ts: list[float]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in ts]


def _redis_series(rows: list[dict[str, str]]) -> list[Series]:
    """A time series of the numeric fields of stream rows (time: window_start_ms)."""
    out: dict[str, Series] = {}
    for row in rows:
        if "window_start_ms" not in row:
            continue
        t = int(row["window_start_ms"]) / 1000
        for name in ("confidence",):
            if name in row:
                s = out.setdefault(name, Series(name))
                s.t.append(t)
                s.v.append(float(row[name]))
    return list(out.values())


def _draw_series(ax: Any, v: PanelView) -> None:
    series: list[Series] = [s for r in v.results for s in r.series if s.v]
    series += [s for r in v.results for s in _redis_series(r.rows)]
    for s in series[:12]:
        ax.plot(_times(s.t), s.v, label=s.name, linewidth=1.2)
    ax.yaxis.set_major_formatter(_formatter(v.unit))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
    import matplotlib.dates as mdates

    ax.xaxis.set_major_formatter(mdates.DateFormatter(TIME_FMT, tz=dt.UTC))


def tick_labels(values: list[float], unit: str) -> list[str]:
    """Axis tick labels in ``unit``, with as many decimals as the tick spacing needs
    (Grafana's own choice): ticks 0.2 ms apart read "9.2 ms", "9.4 ms", not "9 ms" twice."""
    steps = [abs(b - a) for a, b in itertools.pairwise(values) if b != a]
    if unit != "s" or not steps or max(abs(v) for v in values) >= 1:
        return [fmt(v, unit) for v in values]
    step_ms = min(steps) * 1000
    decimals = 0 if step_ms >= 1 else min(3, math.ceil(-math.log10(step_ms) - 1e-9))
    return [f"{v * 1000:.{decimals}f} ms" for v in values]


def _formatter(unit: str) -> Any:
    from matplotlib.ticker import Formatter

    class UnitTicks(Formatter):
        def format_ticks(self, values: Any) -> list[str]:
            return tick_labels([float(v) for v in values], unit)

        def __call__(self, x: float, pos: int | None = None) -> str:
            return fmt(x, unit)

    return UnitTicks()


def _draw_stat(ax: Any, v: PanelView) -> None:
    ax.axis("off")
    text = "No data"
    for r in v.results:
        for s in r.series:
            if s.v:
                text = fmt(s.v[-1], v.unit, v.decimals)
                break
        for row in r.rows:
            text = _stat_of_row(row, v.unit)
    ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=20, weight="bold")


def _stat_of_row(row: dict[str, str], unit: str) -> str:
    if "value" in row:
        return row["value"]
    if unit == "dateTimeFromNow":
        return fmt(float(row.get("processed_ms", "0")), unit)
    if unit == "percentunit" and "confidence" in row:
        return fmt(float(row["confidence"]), unit)
    return row.get("label", "?")


def _draw_bars(ax: Any, v: PanelView) -> None:
    pairs = [(s.name, s.v[-1]) for r in v.results for s in r.series if s.v]
    pairs.sort(key=lambda p: p[1])
    ax.barh([p[0] for p in pairs], [p[1] for p in pairs], color="tab:orange")
    ax.tick_params(labelsize=7)


def _draw_states(ax: Any, v: PanelView) -> None:
    """Prometheus series (1 while a state holds), or Redis rows (label changes over time)."""
    import matplotlib.dates as mdates

    segments: dict[str, list[tuple[float, float]]] = {}
    for r in v.results:
        for s in r.series:
            on = [t for t, x in zip(s.t, s.v, strict=True) if x >= 1]
            segments.setdefault(s.name, []).extend((t, 5.0) for t in on)
        for t, end, label in _row_spans(r.rows):
            segments.setdefault(label, []).append((t, max(end - t, 0.5)))
    colors = _palette(sorted(segments))
    for i, (label, segs) in enumerate(sorted(segments.items())):
        ax.broken_barh(
            [(mdates.date2num(_times([t])[0]), w / 86400) for t, w in segs],
            (i - 0.4, 0.8),
            color=colors[label],
        )
    ax.set_yticks(range(len(segments)), sorted(segments), fontsize=7)
    ax.xaxis_date(tz=dt.UTC)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(TIME_FMT, tz=dt.UTC))
    ax.tick_params(labelsize=7)


def _row_spans(rows: list[dict[str, str]]) -> list[tuple[float, float, str]]:
    """(start s, end s, label) of episode or window rows; a window lasts until the next."""
    out = []
    for i, row in enumerate(rows):
        t = row.get("start_ms") or row.get("window_start_ms")
        label = row.get("activity") or row.get("label")
        if t is None or label is None:
            continue
        end = row.get("end_ms") or row.get("window_end_ms")
        if end is None:
            nxt = rows[i + 1].get("window_start_ms") if i + 1 < len(rows) else None
            end = nxt or str(int(t) + 2000)
        out.append((int(t) / 1000, int(end) / 1000, label))
    return out


def _palette(labels: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _draw_minutes(ax: Any, v: PanelView) -> None:
    rows = [json.loads(r["member"]) for res in v.results for r in res.rows]
    acts = sorted({k for row in rows for k in row if k != "t"})
    colors = _palette(acts)
    labels = [dt.datetime.fromtimestamp(row["t"] / 1000, dt.UTC) for row in rows]
    names = [
        t.strftime("%m-%d %H:00") if "hour" in v.title else t.strftime("%Y-%m-%d") for t in labels
    ]
    bottom = [0.0] * len(rows)
    for a in acts:
        vals = [float(row.get(a, 0.0)) for row in rows]
        ax.bar(names, vals, bottom=bottom, label=a, color=colors[a])
        bottom = [b + x for b, x in zip(bottom, vals, strict=True)]
    ax.set_ylabel("minutes", fontsize=7)
    ax.tick_params(labelsize=7)
    if acts:  # beside the bars, not over them
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _draw_table(ax: Any, v: PanelView) -> None:
    ax.axis("off")
    rows = [row for r in v.results for row in r.rows][:8]
    if not rows:
        return
    cols = v.keep or [c for c in rows[0] if c not in ("probs",)][:7]
    shown = [v.rename.get(c, c) for c in cols]
    cells = [
        [_cell(c, row.get(c, ""), v.units.get(name)) for c, name in zip(cols, shown, strict=True)]
        for row in rows
    ]
    tab = ax.table(cellText=cells, colLabels=shown, loc="upper center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(6)
    tab.scale(1, 1.2)


def _cell(column: str, value: str, unit: str | None = None) -> str:
    """Epoch-ms columns as UTC times (as the Grafana panel's field types show them), a
    column with a unit override in that unit."""
    if column.endswith("_ms") and value.isdigit() and len(value) >= 12:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC).strftime(TIME_FMT)
    if unit == "ms" and value:
        return f"{float(value):.0f} ms"
    if unit is not None and value:
        try:
            return fmt(float(value), unit)
        except ValueError:
            pass
    return value[:22]


DRAW = {
    "timeseries": _draw_series,
    "stat": _draw_stat,
    "bargauge": _draw_bars,
    "state-timeline": _draw_states,
    "barchart": _draw_minutes,
    "table": _draw_table,
}


def draw(title: str, views: list[PanelView], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(views) + COLS - 1) // COLS
    fig, axes = plt.subplots(rows, COLS, figsize=(6 * COLS, 3.2 * rows), squeeze=False)
    for ax, v in zip(axes.flat, views, strict=False):
        ax.set_title(v.title, fontsize=9, loc="left")
        if v.has_data:
            DRAW[v.kind](ax, v)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "No data", ha="center", va="center", color="grey", fontsize=12)
    for ax in list(axes.flat)[len(views) :]:
        ax.axis("off")
    fig.suptitle(title + "  (UTC)", fontsize=13, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.2 * rows)))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render_all(
    settings: Any,
    out_dir: Path,
    *,
    window: Window,
    participant: str | None = None,
    redis_client: Any = None,
) -> dict[str, list[PanelView]]:
    """Draw every dashboard to ``out_dir/<name>.png``; returns what each panel showed."""
    from wearmon.settings import redis_errors

    out_dir.mkdir(parents=True, exist_ok=True)
    prom = Prometheus(
        settings.grafana.prometheus_url or f"http://127.0.0.1:{settings.ports.prometheus}"
    )
    client = redis_client or settings.redis.connect()
    report: dict[str, list[PanelView]] = {}
    try:
        variables = {"participant": participant or _a_participant(client)}
        for name in builders():
            views = collect(name, prom, client, window, variables)
            title = str(dashboard_json(name)["title"])
            if name == "participant":
                title += f"  (participant {variables['participant']})"
            draw(title, views, out_dir / f"{name}.png")
            report[name] = views
    except redis_errors() as exc:
        from wearmon.redact import redact

        raise DashboardQueryError(
            f"Redis at {redact(settings.redis.url)} unavailable for the dashboards: {exc}"
        ) from None
    finally:
        if redis_client is None:
            client.close()
    return report


def _a_participant(client: Any) -> str:
    """The device with the most recent prediction (for a render without --participant)."""
    from stream_processor.episodes import key_device
    from stream_processor.sinks import decode_fields, latest_key

    best, best_t = "", -1
    for key in client.scan_iter(match=latest_key("*"), count=1000):
        fields = decode_fields(client.hgetall(key))
        t = int(fields.get("processed_ms", "0") or 0)
        if t > best_t:
            best, best_t = key_device(key), t
    return best
