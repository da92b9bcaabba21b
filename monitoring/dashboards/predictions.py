"""The Predictions and models dashboard: class mix, predictions and live accuracy by model
version, the version served over time, retrainings and promotions."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from monitoring.dashboards.common import Q, new_dashboard, row, single, states, ts

UID = "wearmon-predictions"
R = "[$__rate_interval]"
S = "wearmon_stream_"
M = "wearmon_monitor_"
#: tags of the monitor's Grafana annotations (one per policy transition, tagged with the
#: state entered): into "retraining" (started) and "cooldown" (finished, with the result)


def _classes(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Predictions"))
        .with_panel(
            ts(
                "Class mix over time",
                "Share of the predictions of each activity (windows per second, stacked to 100 %).",
                "percentunit",
                [
                    Q(
                        f"sum by (label) (rate({S}predictions_total{R})) "
                        f"/ ignoring(label) group_left sum(rate({S}predictions_total{R}))",
                        "{{label}}",
                    )
                ],
                stack=True,
                max_val=1,
            )
        )
        .with_panel(
            ts(
                "Predictions/s by model version",
                "Windows classified per second by each model version being served.",
                "wps",
                [
                    Q(
                        f"sum by (model_version) (rate({S}predictions_total{R}))",
                        "v{{model_version}}",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Confidence of the predictions",
                "Confidence (probability of the predicted class) of the windows classified: "
                "p10, p50, p90 (from the workers' histogram), and the share under 0.5.",
                "percentunit",
                [
                    *(
                        Q(
                            f"histogram_quantile({q}, sum by (le) (rate({S}confidence_bucket{R})))",
                            f"p{round(q * 100)}",
                        )
                        for q in (0.1, 0.5, 0.9)
                    ),
                    Q(
                        f'sum(rate({S}confidence_bucket{{le="0.5"}}{R})) '
                        f"/ sum(rate({S}confidence_count{R}))",
                        "share < 0.5",
                    ),
                ],
                max_val=1,
            )
        )
        .with_panel(
            ts(
                "Confidence drift",
                "The monitor's prediction-drift scores: class mix and confidence of the live "
                "predictions against the champion's reference (1 = the decision threshold).",
                "none",
                [Q(f"max by (kind) ({M}prediction_drift)", "{{kind}}")],
            )
        )
        .with_panel(
            ts(
                "Live accuracy by model version",
                "Accuracy of the predictions that ground-truth labels arrived for, by version.",
                "percentunit",
                [Q(f"max by (model_version) ({S}live_accuracy)", "v{{model_version}}")],
                max_val=1,
                span=24,
            )
        )
    )


def _models(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Models"))
        .with_panel(
            states(
                "Model version served",
                "The model version each worker serves, over time (from the workers).",
                [Q(f"max by (model_version) ({S}model_version_info) == 1", "v{{model_version}}")],
                span=12,
            )
        )
        .with_panel(
            states(
                "Champion version",
                "The champion the monitor checks drift against, over time.",
                [Q(f"max by (model_version) ({M}champion_info) == 1", "v{{model_version}}")],
                span=12,
            )
        )
        .with_panel(
            ts(
                "Labelled predictions scored",
                "Predictions joined with a ground-truth label per second, right and wrong.",
                "short",
                [
                    Q(
                        f"sum by (model_version, result) (rate({S}scored_predictions_total{R}))",
                        "v{{model_version}} {{result}}",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Retrainings by result",
                "Retrainings the monitor started, and how they ended (promoted, refused by the "
                "gate, failed), in the dashboard's time range.",
                "none",
                [Q(f"sum by (result) (increase({M}retrainings_total[1h]))", "{{result}}")],
            )
        )
        .with_panel(
            single(
                "Model swaps (30 min)",
                "Hot swaps of the served model by the workers in the last 30 minutes.",
                "none",
                [Q(f'sum(increase({S}model_swaps_total{{result="swapped"}}[30m]))')],
                span=6,
                decimals=0,
            )
        )
    )


def build() -> dashboard.Dashboard:
    d = new_dashboard(
        UID,
        "wearmon / Predictions and models",
        "What the models predict, how well (where labels arrive), and which version serves.",
    ).annotation(
        dashboard.AnnotationQuery()
        .name("Retrainings and promotions")
        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .icon_color("purple")
        .built_in(0)
        .target(
            dashboard.AnnotationTarget()
            .type("tags")
            .tags(["retraining", "cooldown"])
            .limit(100)
            .match_any(True)
        )
    )
    for part in (_classes, _models):
        d = part(d)
    return d
