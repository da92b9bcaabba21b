"""The queries of generated dashboards, as plain data: for the query test, the renderer and
the checks of variables and metric names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Grafana's global variables that the Prometheus data source substitutes itself
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)")
_METRIC = re.compile(r"\b(wearmon_[a-z0-9_]+|up)\b(?!\s*\()")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    panel_type: str
    unit: str
    datasource: str  # the datasource variable's name ("prometheus" or "redis")
    target: dict[str, Any]

    @property
    def is_prometheus(self) -> bool:
        return "expr" in self.target


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row (panels inside collapsed rows included)."""
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def queries(name: str, dash: dict[str, Any]) -> Iterator[PanelQuery]:
    for p in panels(dash):
        ds = str((p.get("datasource") or {}).get("uid", ""))
        unit = str(p.get("fieldConfig", {}).get("defaults", {}).get("unit", ""))
        for t in p.get("targets", []):
            yield PanelQuery(name, p.get("title", ""), p["type"], unit, _var_name(ds), t)


def _var_name(uid: str) -> str:
    m = _VAR.fullmatch(uid)
    return (m.group(1) or m.group(2)) if m else ""


def variables_used(text: str) -> set[str]:
    """Names of the variables a query uses (``$x``, ``${x}``), Grafana's ``$__*`` excepted."""
    names = {a or b for a, b in _VAR.findall(text)}
    return {n for n in names if not n.startswith("__")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label names and functions excepted)."""
    no_labels = re.sub(r"\{[^}]*\}", "", expr)
    no_by = re.sub(r"\b(by|without|ignoring|on|group_left|group_right)\s*\([^)]*\)", "", no_labels)
    return set(_METRIC.findall(no_by))


def substitute(expr: str, *, rate_interval_s: int, interval_s: int, range_s: int) -> str:
    """The PromQL Grafana would send: its interval macros replaced by durations."""
    return (
        expr.replace("$__rate_interval", f"{rate_interval_s}s")
        .replace("$__interval", f"{interval_s}s")
        .replace("$__range", f"{range_s}s")
    )


def redis_command(target: dict[str, Any], variables: dict[str, str]) -> list[str]:
    """The Redis command the redis-datasource plugin runs for a query (what it sends
    for the commands the dashboards use), with variables substituted."""
    key = str(target["keyName"])
    for name, value in variables.items():
        key = key.replace("${" + name + "}", value).replace("$" + name, value)
    cmd = str(target["command"])
    count = int(target.get("count") or 0)
    tail = ["COUNT", str(count)] if count else []
    start, end = str(target.get("start") or "-"), str(target.get("end") or "+")
    if cmd == "xrange":
        return ["XRANGE", key, start, end, *tail]
    if cmd == "xrevrange":
        return ["XREVRANGE", key, end, start, *tail]
    if cmd == "zrange":
        return ["ZRANGE", key, str(target["min"]), str(target["max"]), "BYSCORE", "WITHSCORES"]
    if cmd in ("hgetall", "xlen", "get", "hlen", "ttl", "type"):
        return [cmd.upper(), key]
    raise ValueError(f"no Redis command known for redis-datasource command {cmd!r}")


def exposed_names(registry: Any) -> set[str]:
    """The series names a prometheus_client registry exposes (``_total``, ``_bucket`` ...)."""
    out: set[str] = set()
    for fam in registry.collect():
        if fam.type == "counter":
            out |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "histogram":
            out |= {fam.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            out.add(fam.name)
    return out
