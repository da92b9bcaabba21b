"""The Participant dashboard (what a study clinician opens): one participant, chosen by the
``participant`` variable (the pseudonymous device id), read from Redis through Grafana's
Redis data source plugin. Device ids never become Prometheus labels.

Keys: ``pred:latest:{device}`` and ``pred:hist:{device}`` (stream_processor.sinks), the
episode and minute keys of stream_processor.episodes.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, dashboard, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm

from monitoring.dashboards.common import (
    REDIS,
    RedisQuery,
    field_unit,
    keep_fields,
    new_dashboard,
    redis_stat,
    redis_table,
    redis_variable,
    row,
    to_types,
    transform,
)
from stream_processor.episodes import daily_key, episodes_key, hourly_key, open_episode_key
from stream_processor.sinks import history_key, latest_key

UID = "wearmon-participant"
VAR = "participant"
DEVICE = "${" + VAR + "}"


def _latest(d: dashboard.Dashboard) -> dashboard.Dashboard:
    q = RedisQuery("hgetall", latest_key(DEVICE))
    return (
        d.with_panel(
            redis_stat("Current activity", "The latest predicted activity.", "none", q)
            .with_transformation(keep_fields("label"))
            .text_mode(cm.BigValueTextMode.VALUE)
            .reduce_options(_last_not_null("label"))
        )
        .with_panel(
            redis_stat(
                "Confidence",
                "Confidence of the latest prediction (0..1).",
                "percentunit",
                RedisQuery("hgetall", latest_key(DEVICE)),
            )
            .with_transformation(to_types(confidence="number"))
            .with_transformation(keep_fields("confidence"))
        )
        .with_panel(
            redis_stat(
                "Last data",
                "When the newest window of this participant was classified; a long time "
                "means the watch sends nothing.",
                "dateTimeFromNow",
                RedisQuery("hgetall", latest_key(DEVICE)),
            )
            .with_transformation(to_types(processed_ms="number"))
            .with_transformation(keep_fields("processed_ms"))
        )
        .with_panel(
            redis_stat(
                "Windows kept",
                "Classified windows in this participant's history (4 s each, 2 s apart).",
                "none",
                RedisQuery("xlen", history_key(DEVICE)),
            )
        )
    )


def _last_not_null(field_name: str) -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields(f"/^{field_name}$/").values(False)


def _timeline(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Activity"))
        .with_panel(
            statetimeline.Panel()
            .title("Activity timeline (episodes)")
            .description(
                "Episodes of one predicted activity (consecutive windows merged): the closed "
                "ones in the dashboard's time range and the one still growing."
            )
            .unit("none")
            .datasource(REDIS)
            .with_target(RedisQuery("xrange", episodes_key(DEVICE), count=10000))
            .with_target(RedisQuery("hgetall", open_episode_key(DEVICE), ref_id="B"))
            .with_transformation(to_types(start_ms="time"))
            .with_transformation(keep_fields("start_ms", "activity"))
            .span(24)
            .height(5)
            .show_value(cm.VisibilityMode.AUTO)
        )
        .with_panel(
            statetimeline.Panel()
            .title("Predicted activity per window")
            .description("Every classified window (pred:hist): its predicted activity.")
            .unit("none")
            .datasource(REDIS)
            .with_target(RedisQuery("xrange", history_key(DEVICE), count=10000))
            .with_transformation(to_types(window_start_ms="time"))
            .with_transformation(keep_fields("window_start_ms", "label"))
            .span(12)
            .height(6)
            .show_value(cm.VisibilityMode.NEVER)
        )
        .with_panel(
            timeseries.Panel()
            .title("Confidence per window")
            .description("Confidence (0..1) of every classified window's prediction.")
            .unit("percentunit")
            .datasource(REDIS)
            .with_target(RedisQuery("xrange", history_key(DEVICE), count=10000))
            .with_transformation(to_types(window_start_ms="time", confidence="number"))
            .with_transformation(keep_fields("window_start_ms", "confidence"))
            .min(0)
            .max(1)
            .span(12)
            .height(6)
        )
    )


def _minutes(title: str, description: str, key: str) -> barchart.Panel:
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .unit("m")
        .datasource(REDIS)
        .with_target(RedisQuery("zrange", key, zrangeQuery="BYSCORE", min="-inf", max="+inf"))
        .x_field("t")
        .with_transformation(transform("extractFields", {"source": "member", "format": "json"}))
        .with_transformation(to_types(t="time"))
        .stacking(cm.StackingMode.NORMAL)
        .span(12)
        .height(8)
    )


def _totals(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_panel(
            _minutes(
                "Minutes per activity per hour",
                "Minutes of each predicted activity in each hour (UTC hours); 'no data': "
                "minutes between windows more than one hop apart (watch silent or windows "
                "skipped).",
                hourly_key(DEVICE),
            )
        )
        .with_panel(
            _minutes(
                "Minutes per activity per day",
                "Minutes of each predicted activity on each day (UTC days), and 'no data'.",
                daily_key(DEVICE),
            )
        )
        .with_row(row("Episodes and latest state"))
        .with_panel(_episodes_table())
        .with_panel(_latest_table())
    )


def _episodes_table() -> table.Panel:
    p = (
        redis_table(
            "Recent episodes",
            "The newest closed episodes, newest first: consecutive windows of one predicted "
            "activity merged, with their mean confidence and number of windows (4 s each, "
            "2 s apart).",
            "none",
            RedisQuery("xrevrange", episodes_key(DEVICE), count=20),
        )
        .with_transformation(
            to_types(start_ms="time", end_ms="time", mean_confidence="number", windows="number")
        )
        .with_transformation(
            keep_fields(
                "start_ms",
                "end_ms",
                "activity",
                "mean_confidence",
                "windows",
                rename={
                    "start_ms": "Start",
                    "end_ms": "End",
                    "activity": "Activity",
                    "mean_confidence": "Mean confidence",
                    "windows": "Windows",
                },
            )
        )
    )
    return field_unit(p, "Mean confidence", "percentunit")


def _latest_table() -> table.Panel:
    p = (
        redis_table(
            "Latest prediction",
            "The newest prediction as stored (window, when it was classified, latency from "
            "the watch's message, model version).",
            "none",
            RedisQuery("hgetall", latest_key(DEVICE)),
        )
        .with_transformation(
            to_types(
                window_start_ms="time",
                window_end_ms="time",
                processed_ms="time",
                confidence="number",
                latency_ms="number",
            )
        )
        .with_transformation(
            keep_fields(
                "label",
                "confidence",
                "window_start_ms",
                "window_end_ms",
                "processed_ms",
                "latency_ms",
                "model_version",
                rename={
                    "label": "Activity",
                    "confidence": "Confidence",
                    "window_start_ms": "Window start",
                    "window_end_ms": "Window end",
                    "processed_ms": "Classified",
                    "latency_ms": "Latency",
                    "model_version": "Model",
                },
            )
        )
    )
    return field_unit(field_unit(p, "Confidence", "percentunit"), "Latency", "ms")


def build() -> dashboard.Dashboard:
    d = (
        new_dashboard(
            UID,
            "wearmon / Participant",
            "One participant's activity: timeline, minutes per activity, data quality.",
            prometheus_var=False,
        )
        .with_variable(redis_variable())
        .with_variable(
            dashboard.TextBoxVariable(VAR).label("Participant (device id)").default_value("")
        )
        .time("now-6h", "now")
    )
    for part in (_latest, _timeline, _totals):
        d = part(d)
    return d
