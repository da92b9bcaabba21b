"""``wearmon watch``: a live terminal view of the latest prediction per device (rich)."""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from stream_processor.sinks import decode_fields, latest_key
from wearmon.errors import WearmonError
from wearmon.settings import Settings

log = logging.getLogger(__name__)

RATE_METRICS = {
    "wearmon_stream_messages_in_total": "messages/s",
    "wearmon_stream_windows_emitted_total": "windows/s",
    "wearmon_stream_predictions_total": "predictions/s",
    "wearmon_stream_deadletters_total": "dead letters/s",
}


@dataclass
class Snapshot:
    devices: list[dict[str, str]]
    totals: dict[str, float]
    at: float


def read_latest(client: Any, limit: int) -> list[dict[str, str]]:
    """Latest prediction of every device, newest first (at most ``limit``)."""
    keys = list(client.scan_iter(match=latest_key("*"), count=1000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k)
    rows = [decode_fields(r) for r in pipe.execute() if r]
    rows.sort(key=lambda r: int(r.get("processed_ms") or 0), reverse=True)
    return rows[:limit]


def read_totals(url: str) -> dict[str, float]:
    """Sums of the rate counters from a worker's /metrics (empty when unreachable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in RATE_METRICS:
                totals[s.name] = totals.get(s.name, 0.0) + float(s.value)
    return totals


def render(snap: Snapshot, prev: Snapshot | None) -> Any:
    from rich.console import Group
    from rich.table import Table

    now_ms = int(time.time() * 1000)
    table = Table(title=f"wearmon: latest prediction per device ({len(snap.devices)} shown)")
    for col in (
        "device",
        "window start (UTC)",
        "label",
        "confidence",
        "model",
        "age s",
        "latency ms",
    ):
        table.add_column(col)
    for r in snap.devices:
        ws = int(r.get("window_start_ms") or 0)
        table.add_row(
            r.get("device", "?"),
            time.strftime("%H:%M:%S", time.gmtime(ws / 1000)),
            r.get("label", "?"),
            f"{float(r.get('confidence') or 0):.2f}",
            r.get("model_version", "?"),
            f"{(now_ms - int(r.get('processed_ms') or now_ms)) / 1000:.1f}",
            r.get("latency_ms", ""),
        )
    rates = Table(title="pipeline rates (from the worker's /metrics)")
    rates.add_column("rate")
    rates.add_column("value")
    if prev is not None and snap.totals:
        dt = max(1e-6, snap.at - prev.at)
        for name, label in RATE_METRICS.items():
            d = snap.totals.get(name, 0.0) - prev.totals.get(name, 0.0)
            rates.add_row(label, f"{max(0.0, d) / dt:.1f}")
    elif not snap.totals:
        rates.add_row("worker metrics", "unreachable")
    else:
        rates.add_row("(measuring)", "")
    return Group(table, rates)


def run_watch(
    settings: Settings, *, refresh_s: float = 1.0, limit: int = 30, once: bool = False
) -> None:
    from rich.console import Console
    from rich.live import Live

    from wearmon.settings import redis_errors

    url = f"http://127.0.0.1:{settings.metrics.stream_port}/metrics"
    where = f"cannot read predictions from {settings.redis.url}"
    try:
        client = settings.redis.connect()
    except redis_errors() as exc:
        raise WearmonError(f"{where}: {exc}") from None

    def snapshot() -> Snapshot:
        try:
            return Snapshot(read_latest(client, limit), read_totals(url), time.monotonic())
        except redis_errors() as exc:
            raise WearmonError(f"{where}: {exc}") from None

    console = Console()
    prev = snapshot()
    if once:
        console.print(render(prev, None))
        return
    with Live(render(prev, None), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(refresh_s)
                snap = snapshot()
                live.update(render(snap, prev))
                prev = snap
        except KeyboardInterrupt:
            pass
