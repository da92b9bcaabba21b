"""Building blocks shared by the dashboards: datasource variables, panels, Redis queries.

Every panel reads its datasource from a dashboard variable (``${prometheus}`` or ``${redis}``),
so one JSON file works in any Grafana whatever the datasources are called there. Every panel
has a unit and a description; the tests in tests/unit/dashboards check both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

PROM_VAR = "prometheus"
REDIS_VAR = "redis"
#: the plugin id of Grafana's Redis data source (installed by the compose Grafana)
REDIS_PLUGIN = "redis-datasource"
PROM = dm.DataSourceRef(type_val="prometheus", uid="${" + PROM_VAR + "}")
REDIS = dm.DataSourceRef(type_val=REDIS_PLUGIN, uid="${" + REDIS_VAR + "}")
#: the scrape jobs of docker-compose's prometheus.yml and of wearmon.stack (same names)
STREAM_JOB = "wearmon-stream"
REPLAY_JOB = "wearmon-replay"
MONITOR_JOB = "wearmon-monitor"
REF_IDS = "ABCDEFGHIJ"


def prometheus_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable(PROM_VAR).label("Prometheus").type("prometheus")


def redis_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable(REDIS_VAR).label("Redis").type(REDIS_PLUGIN)


def new_dashboard(
    uid: str, title: str, description: str, *, prometheus_var: bool = True
) -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["wearmon"])
        .editable()
        .time("now-30m", "now")
        .refresh("10s")
        .timezone("browser")
    )
    return d.with_variable(prometheus_variable()) if prometheus_var else d


@dataclass(frozen=True)
class Q:
    """One Prometheus query of a panel: PromQL and the legend of its series."""

    expr: str
    legend: str = ""
    instant: bool = False


def _targets(queries: Sequence[Q]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    out: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for ref, q in zip(REF_IDS, queries, strict=False):
        t = prometheus.Dataquery().expr(q.expr).ref_id(ref).datasource(PROM)
        if q.legend:
            t = t.legend_format(q.legend)
        out.append(t.instant() if q.instant else t.range())
    if len(queries) > len(REF_IDS):
        raise ValueError(f"at most {len(REF_IDS)} queries per panel")
    return out


def ts(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    *,
    span: int = 12,
    stack: bool = False,
    min_val: float | None = 0,
    max_val: float | None = None,
) -> timeseries.Panel:
    """A time-series panel over Prometheus."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .targets(_targets(queries))
        .span(span)
        .height(8)
        .line_width(1)
        .fill_opacity(25 if stack else 10)
        .show_points(cm.VisibilityMode.NEVER)
    )
    if stack:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return p


def single(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    *,
    span: int = 4,
    decimals: float | None = None,
) -> stat.Panel:
    """A stat panel (the last value) over Prometheus."""
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .targets(_targets(queries))
        .span(span)
        .height(4)
        .graph_mode(cm.BigValueGraphMode.AREA)
    )
    return p if decimals is None else p.decimals(decimals)


def bars(title: str, description: str, unit: str, queries: Sequence[Q], *, span: int = 12) -> Any:
    """Horizontal bars of the last values (e.g. top features) over Prometheus."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .targets(_targets(queries))
        .span(span)
        .height(8)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .min(0)
    )


def states(
    title: str, description: str, queries: Sequence[Q], *, span: int = 24
) -> statetimeline.Panel:
    """A state timeline over Prometheus (one row per series)."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .datasource(PROM)
        .targets(_targets(queries))
        .span(span)
        .height(6)
    )


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


# --------------------------------------------------------------------------- Redis


@dataclass
class RedisDataquery(cogvariants.Dataquery):
    """A query of Grafana's Redis data source plugin (its query model: type, command,
    keyName, start, end, count, field ...; see docs/dashboards.md)."""

    ref_id: str
    command: str
    key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": REDIS.to_json(),
            "type": "command",
            "command": self.command,
            "keyName": self.key,
            "query": "",
            **self.extra,
        }


class RedisQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of one Redis query (the SDK has none for this plugin)."""

    def __init__(self, command: str, key: str, ref_id: str = "A", **extra: Any) -> None:
        self._q = RedisDataquery(ref_id=ref_id, command=command, key=key, extra=dict(extra))

    def build(self) -> cogvariants.Dataquery:
        return self._q


def transform(id_val: str, options: dict[str, Any]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_val, options=options)


def to_types(**fields: str) -> dm.DataTransformerConfig:
    """Convert string fields (all that Redis returns) to number/time."""
    conversions = [{"targetField": f, "destinationType": t} for f, t in fields.items()]
    return transform("convertFieldType", {"conversions": conversions, "fields": {}})


def keep_fields(*names: str, rename: dict[str, str] | None = None) -> dm.DataTransformerConfig:
    """Keep only ``names`` (in this order), shown under ``rename``'s names."""
    return transform(
        "organize",
        {
            "excludeByName": {},
            "includeByName": dict.fromkeys(names, True),
            "indexByName": {n: i for i, n in enumerate(names)},
            "renameByName": dict(rename or {}),
        },
    )


def field_unit(panel: Any, name: str, unit: str) -> Any:
    """``panel`` with field ``name`` (as shown, after renames) in ``unit``."""
    return panel.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=unit)])


def redis_table(
    title: str, description: str, unit: str, query: RedisQuery, *, span: int = 12
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(REDIS)
        .with_target(query)
        .span(span)
        .height(7)
    )


def redis_stat(
    title: str, description: str, unit: str, query: RedisQuery, *, span: int = 6
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(REDIS)
        .with_target(query)
        .span(span)
        .height(4)
        .graph_mode(cm.BigValueGraphMode.NONE)
    )
