"""The generated dashboards: committed JSON up to date, valid for Grafana 11 as far as can be
checked without a server, and every query naming only variables and metrics that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.dashboards.generate import builders, dashboard_json, load_all, stale
from monitoring.dashboards.queries import (
    exposed_names,
    metric_names,
    panels,
    queries,
    variables_used,
)
from monitoring.metrics import MonitorMetrics
from producers.metrics import ReplayMetrics
from stream_processor.metrics import StreamMetrics

ROOT = Path(__file__).resolve().parents[3]
FOLDER = ROOT / "deploy" / "grafana" / "dashboards"


def known_metrics() -> set[str]:
    """Every series name the code exports: the stream worker's, the replay's, the monitor's
    registries, and Prometheus' own ``up``."""
    registries = (StreamMetrics().registry, ReplayMetrics().registry, MonitorMetrics().registry)
    return set().union(*(exposed_names(r) for r in registries)) | {"up"}


def test_committed_json_equals_generated() -> None:
    assert stale(FOLDER) == [], "run `wearmon dashboards generate` and commit the JSON"
    assert set(load_all(FOLDER)) == set(builders())


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return {name: dashboard_json(name) for name in builders()}


def test_grafana_11_shape(dashboards: dict[str, dict]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for d in dashboards.values():
        assert 39 <= d["schemaVersion"] <= 41  # Grafana 11.0 .. 11.6
        assert d["title"] and d["description"] and "wearmon" in d["tags"]
        ids = [p.get("id") for p in d["panels"]]
        assert all(isinstance(g["gridPos"]["w"], int) for g in d["panels"])
        assert len(ids) == len(d["panels"])


#: panel types and transformation ids of Grafana 11 core that the dashboards use
GRAFANA_11_PANELS = {"timeseries", "stat", "state-timeline", "bargauge", "table", "barchart"}
GRAFANA_11_TRANSFORMS = {"convertFieldType", "organize", "extractFields"}


def test_only_grafana_11_core_panels_and_transformations(dashboards: dict[str, dict]) -> None:
    for name, d in dashboards.items():
        for p in panels(d):
            assert p["type"] in GRAFANA_11_PANELS, (name, p["type"])
            for t in p.get("transformations", []):
                assert t["id"] in GRAFANA_11_TRANSFORMS, (name, p["title"], t["id"])
        for row in (p for p in d["panels"] if p["type"] == "row"):
            assert row["gridPos"]["w"] == 24


def test_panel_titles_are_unique_per_dashboard(dashboards: dict[str, dict]) -> None:
    for name, d in dashboards.items():
        titles = [p["title"] for p in panels(d)]
        assert len(set(titles)) == len(titles), name


def test_every_panel_has_unit_description_and_datasource_variable(
    dashboards: dict[str, dict],
) -> None:
    for name, d in dashboards.items():
        ds_vars = {
            v["name"]: v["query"] for v in d["templating"]["list"] if v["type"] == "datasource"
        }
        for p in panels(d):
            where = f"{name}: {p.get('title')}"
            assert p.get("description"), where
            assert p.get("fieldConfig", {}).get("defaults", {}).get("unit"), where
            uid = p["datasource"]["uid"]
            var = uid.removeprefix("${").removesuffix("}")
            assert uid == "${" + var + "}" and var in ds_vars, where
            assert p["datasource"]["type"] == ds_vars[var], where
            assert p["targets"], where
            refs = [t["refId"] for t in p["targets"]]
            assert all(refs) and len(set(refs)) == len(refs), where
            for t in p["targets"]:
                assert t["datasource"] == p["datasource"], where


def test_every_variable_used_is_defined(dashboards: dict[str, dict]) -> None:
    for name, d in dashboards.items():
        defined = {v["name"] for v in d["templating"]["list"]}
        for q in queries(name, d):
            text = " ".join(str(v) for v in q.target.values() if isinstance(v, str | dict))
            missing = variables_used(text) - defined
            assert not missing, f"{name}: {q.panel} uses undefined {missing}"


def test_every_metric_used_exists_in_the_code(dashboards: dict[str, dict]) -> None:
    known = known_metrics()
    used: set[str] = set()
    for name, d in dashboards.items():
        for q in queries(name, d):
            if q.is_prometheus:
                names = metric_names(q.target["expr"])
                assert names, f"{name}: {q.panel}: no metric in {q.target['expr']}"
                assert names <= known, f"{name}: {q.panel}: unknown {names - known}"
                used |= names
    # the dashboards cover the stream's main metrics
    for must in (
        "wearmon_stream_e2e_latency_seconds_bucket",
        "wearmon_stream_consumer_lag",
        "wearmon_stream_deadletters_total",
        "wearmon_monitor_policy_state",
    ):
        assert must in used


def test_metric_name_extraction() -> None:
    expr = 'sum by (le) (rate(wearmon_stream_x_bucket{job="a"}[5m])) / ignoring(label) up'
    assert metric_names(expr) == {"wearmon_stream_x_bucket", "up"}
    assert variables_used("pred:hist:${participant} $__rate_interval $job") == {
        "participant",
        "job",
    }
