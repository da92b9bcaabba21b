"""The Drift dashboard: drift score and share, top drifting features, the trigger policy's
state over time, check duration, and the last decision with its reason (``wearmon monitor``'s
``wearmon_monitor_*`` metrics, and its Redis keys for the decision log)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from monitoring.dashboards.common import (
    Q,
    RedisQuery,
    bars,
    keep_fields,
    new_dashboard,
    redis_table,
    redis_variable,
    row,
    single,
    states,
    to_types,
    ts,
)

UID = "wearmon-drift"
R = "[$__rate_interval]"
M = "wearmon_monitor_"


def _keys() -> tuple[str, str]:
    """(latest check hash, policy transition stream): the monitor's Redis keys."""
    from monitoring import keys

    return keys.DRIFT_LATEST, keys.POLICY_LOG


def _now(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_panel(
            single(
                "Drift score",
                "The latest calibrated population drift score: 1.0 is the decision threshold.",
                "none",
                [Q(f'max({M}drift_score{{scope="population"}})')],
                decimals=2,
            )
        )
        .with_panel(
            single(
                "Features drifting",
                "Share of the window features flagged as drifting in the latest check.",
                "percentunit",
                [Q(f'max({M}drift_share{{scope="population"}})')],
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Devices over threshold",
                "Devices whose own drift score is over the per-device threshold (a count; "
                "no device ids in Prometheus).",
                "none",
                [Q(f"max({M}drifted_devices)")],
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Windows checked",
                "Live windows the latest check compared with the champion's reference.",
                "none",
                [Q(f"max({M}windows_checked)")],
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Since the last check",
                "Seconds since the monitor's last completed check.",
                "s",
                [Q(f"time() - max({M}last_check_timestamp_seconds)")],
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Checks with drift (1 h)",
                "Checks that found drift in the last hour.",
                "none",
                [Q(f'sum(increase({M}checks_total{{result="drift"}}[1h])) or vector(0)')],
                decimals=0,
            )
        )
    )


def _history(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Over time"))
        .with_panel(
            ts(
                "Drift score and share",
                "Population drift score (1 = threshold) and the share of features drifting.",
                "none",
                [
                    Q(f'max({M}drift_score{{scope="population"}})', "score"),
                    Q(f'max({M}drift_share{{scope="population"}})', "share of features"),
                ],
            )
        )
        .with_panel(
            bars(
                "Top drifting features",
                "Per-feature drift scores of the latest check (the top features).",
                "none",
                [Q(f"topk(10, max by (feature) ({M}feature_drift))", "{{feature}}", instant=True)],
            )
        )
        .with_panel(
            states(
                "Trigger policy state",
                "The state of the retraining trigger policy over time "
                "(ok, suspect, drift, retraining, cooldown).",
                [Q(f"max by (state) ({M}policy_state) == 1", "{{state}}")],
            )
        )
        .with_panel(
            ts(
                "Checks by result",
                "Drift checks per minute by result (ok, drift, skipped, error).",
                "none",
                [Q(f"sum by (result) (increase({M}checks_total[1m]))", "{{result}}")],
            )
        )
        .with_panel(
            ts(
                "Check duration",
                "Time one drift check takes: p50 and p95.",
                "s",
                [
                    Q(
                        f"histogram_quantile({q}, sum by (le) (rate({M}check_seconds_bucket{R})))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ],
            )
        )
        .with_panel(
            ts(
                "Data quality",
                "Share of live windows skipped, and the dead-letter rate, as the monitor sees "
                "them.",
                "percentunit",
                [Q(f"max by (kind) ({M}data_quality)", "{{kind}}")],
            )
        )
    )


def _decisions(d: dashboard.Dashboard) -> dashboard.Dashboard:
    latest, log = _keys()
    return (
        d.with_row(row("Decisions"))
        .with_panel(
            redis_table(
                "Last check",
                "The latest drift check as the monitor stored it (Redis hash): when, the "
                "policy state, the verdict, score (1 = threshold), share of features over "
                "threshold, windows and devices, the model, the top features.",
                "none",
                RedisQuery("hgetall", latest),
            )
            .with_transformation(to_types(ts_ms="time"))
            .with_transformation(
                keep_fields(
                    "ts_ms",
                    "state",
                    "drifted",
                    "score",
                    "share",
                    "n_windows",
                    "drifted_devices",
                    "model_version",
                    "top",
                )
            )
        )
        .with_panel(
            redis_table(
                "Policy decisions and reasons",
                "The last transitions of the trigger policy, newest first, with the reason and "
                "the trigger id that links to the retraining (Redis stream).",
                "none",
                RedisQuery("xrevrange", log, count=20),
            )
        )
    )


def build() -> dashboard.Dashboard:
    d = new_dashboard(
        UID,
        "wearmon / Drift",
        "Drift of the live windows against the champion's reference, and the retraining policy.",
    ).with_variable(redis_variable())
    d = d.annotation(
        dashboard.AnnotationQuery()
        .name("Policy transitions")
        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .icon_color("orange")
        .built_in(0)
        .target(dashboard.AnnotationTarget().type("tags").tags(["drift"]).limit(100))
    )
    for part in (_now, _history, _decisions):
        d = part(d)
    return d
