"""Run the dashboards' queries against a live Prometheus and Redis, as Grafana would.

Prometheus queries get Grafana's interval macros replaced (``$__rate_interval`` as Grafana
computes it for the scrape interval: four scrapes) and go to the HTTP API
(``/api/v1/query_range`` or ``/api/v1/query``); Redis queries become the command the
redis-datasource plugin sends. Used by ``wearmon dashboards render`` and the query test.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from monitoring.dashboards.queries import PanelQuery, redis_command, substitute
from wearmon.errors import DashboardQueryError


@dataclass(frozen=True)
class Window:
    """The time range and resolution of a dashboard view."""

    start_s: float
    end_s: float
    step_s: int = 5
    scrape_s: int = 5

    @property
    def rate_interval_s(self) -> int:
        return max(4 * self.scrape_s, self.step_s + self.scrape_s)

    @classmethod
    def last(cls, seconds: float, step_s: int = 5, scrape_s: int = 5) -> Window:
        now = time.time()
        return cls(now - seconds, now, step_s, scrape_s)


@dataclass
class Series:
    name: str
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)


@dataclass
class Result:
    """What one query returned: time series (Prometheus), or rows (Redis)."""

    query: PanelQuery
    command: str
    series: list[Series] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(s.v for s in self.series) or bool(self.rows)


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: the query did not parse or run
            try:
                err = json.load(exc).get("error", str(exc))
            except ValueError:
                err = str(exc)
            raise DashboardQueryError(
                f"Prometheus refused {params.get('query')!r}: {err}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DashboardQueryError(f"Prometheus at {self.url} unreachable: {exc}") from None
        if body.get("status") != "success":
            raise DashboardQueryError(f"Prometheus: {body.get('error', body)}")
        return body["data"]

    def instant(self, expr: str, at_s: float | None = None) -> float | None:
        """The first sample of an instant query now (or at Unix time ``at_s``); None when
        there is none, it is NaN, or Prometheus cannot answer (a summary line, not a
        panel)."""
        params: dict[str, Any] = {"query": expr}
        if at_s is not None:
            params["time"] = f"{at_s:.3f}"
        try:
            result = self._get("/api/v1/query", params)["result"]
            value = float(result[0]["value"][1]) if result else None
        except (DashboardQueryError, ValueError, KeyError, IndexError):
            return None
        return None if value is None or math.isnan(value) else value

    def run(self, q: PanelQuery, w: Window) -> Result:
        expr = substitute(
            str(q.target["expr"]),
            rate_interval_s=w.rate_interval_s,
            interval_s=w.step_s,
            range_s=round(w.end_s - w.start_s),
        )
        fmt = str(q.target.get("legendFormat", ""))
        if q.target.get("instant"):
            data = self._get("/api/v1/query", {"query": expr, "time": w.end_s})
            series = [
                Series(legend(fmt, r["metric"]), [float(r["value"][0])], [float(r["value"][1])])
                for r in data["result"]
            ]
        else:
            data = self._get(
                "/api/v1/query_range",
                {"query": expr, "start": w.start_s, "end": w.end_s, "step": w.step_s},
            )
            series = [
                Series(
                    legend(fmt, r["metric"]),
                    [float(t) for t, _ in r["values"]],
                    [float(v) for _, v in r["values"]],
                )
                for r in data["result"]
            ]
        return Result(q, expr, series=series)


def run_redis(client: Any, q: PanelQuery, variables: dict[str, str]) -> Result:
    """The plugin's command for ``q`` on ``client``; rows of field -> value."""
    import redis

    cmd = redis_command(q.target, variables)
    try:
        raw = client.execute_command(*cmd)
    except redis.ResponseError as exc:
        raise DashboardQueryError(f"Redis refused {' '.join(cmd)}: {exc}") from None
    return Result(q, " ".join(cmd), rows=_rows(cmd[0], raw))


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _rows(cmd: str, raw: Any) -> list[dict[str, str]]:
    if cmd in ("XRANGE", "XREVRANGE"):
        out = []
        for eid, fields in raw or []:
            flat = (
                list(fields.items())
                if isinstance(fields, dict)
                else list(zip(fields[::2], fields[1::2], strict=True))
            )
            out.append({"$streamId": _s(eid), **{_s(k): _s(v) for k, v in flat}})
        return out
    if cmd == "HGETALL":
        items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        row = {_s(k): _s(v) for k, v in items}
        return [row] if row else []
    if cmd == "ZRANGE":
        pairs = (
            raw
            if raw and isinstance(raw[0], list | tuple)
            else list(zip(raw[::2], raw[1::2], strict=True))
        )
        return [{"member": _s(m), "score": _s(s)} for m, s in pairs]
    if raw is None:
        return []
    return [{"value": _s(raw)}]
