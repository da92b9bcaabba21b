"""The Pipeline dashboard: throughput, end-to-end latency and its parts, inference, Kafka,
reliability. Metrics of the stream workers (``wearmon_stream_*``) and the replay producer
(``wearmon_replay_*``)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from monitoring.dashboards.common import REPLAY_JOB, STREAM_JOB, Q, new_dashboard, row, single, ts

UID = "wearmon-pipeline"
R = "[$__rate_interval]"
S = "wearmon_stream_"


def _quantiles(metric: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[Q]:
    return [
        Q(
            f"histogram_quantile({q}, sum by (le) (rate({S}{metric}_bucket{R})))",
            f"p{round(q * 100)}",
        )
        for q in qs
    ]


def _p95(metric: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({S}{metric}_bucket{R})))"


def _overview(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_panel(
            single(
                "Workers up",
                "Stream workers Prometheus scrapes successfully (job wearmon-stream).",
                "none",
                [Q(f'sum(up{{job="{STREAM_JOB}"}})')],
            )
        )
        .with_panel(
            single(
                "Devices in the workers",
                "Devices with windower state, summed over the workers.",
                "none",
                [Q(f"sum({S}devices)")],
            )
        )
        .with_panel(
            single(
                "Classified windows/s",
                "Windows classified per second, all workers.",
                "wps",
                [Q(f"sum(rate({S}predictions_total{R}))")],
                decimals=1,
            )
        )
        .with_panel(
            single(
                "p95 end-to-end latency",
                "From the sent time of the message that completes a window to its "
                "prediction in Redis, 95th percentile over the last minute with classified "
                "windows (a minute without any has no percentile, not NaN).",
                "s",
                [
                    Q(
                        f"histogram_quantile(0.95, sum by (le) "
                        f"(rate({S}e2e_latency_seconds_bucket[1m]))) >= 0"
                    )
                ],
                decimals=2,
            )
        )
        .with_panel(
            single(
                "Consumer lag",
                "Sample messages behind the high watermark, all partitions.",
                "none",
                [Q(f"sum({S}consumer_lag)")],
            )
        )
        .with_panel(
            single(
                "Dead letters (30 min)",
                "Messages sent to the dead-letter topic in the last 30 minutes.",
                "none",
                [Q(f"sum(increase({S}deadletters_total[30m]))")],
                decimals=0,
            )
        )
    )


def _throughput(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Throughput"))
        .with_panel(
            ts(
                "Samples/s by sensor",
                "Samples consumed by the workers, and samples handed to Kafka by the replay.",
                "short",
                [
                    Q(f"sum by (sensor) (rate({S}samples_in_total{R}))", "consumed {{sensor}}"),
                    Q(
                        f"sum by (sensor) (rate(wearmon_replay_samples_total{R}))",
                        "replayed {{sensor}}",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Messages/s",
                "Sample messages consumed, replay messages produced (by kind) and delivered.",
                "short",
                [
                    Q(f"sum(rate({S}messages_in_total{R}))", "consumed"),
                    Q(f"sum by (kind) (rate(wearmon_replay_messages_total{R}))", "sent {{kind}}"),
                    Q(f"sum(rate(wearmon_replay_delivered_total{R}))", "delivered"),
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Windows/s",
                "Windows cut by the windower, classified, and not classified (by reason).",
                "wps",
                [
                    Q(f"sum(rate({S}windows_emitted_total{R}))", "cut"),
                    Q(f"sum(rate({S}predictions_total{R}))", "classified"),
                    Q(
                        f"sum by (reason) (rate({S}windows_skipped_total{R}))",
                        "skipped {{reason}}",
                    ),
                ],
                span=8,
            )
        )
    )


def _latency(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Latency"))
        .with_panel(
            ts(
                "End-to-end latency",
                "Message sent (sent_ms) to prediction written to Redis: p50, p95, p99.",
                "s",
                _quantiles("e2e_latency_seconds"),
            )
        )
        .with_panel(
            ts(
                "Parts of the end-to-end latency (p95)",
                "Ingest: message sent to window cut. Queue: window cut to the start of its "
                "inference batch. Inference: one batched call.",
                "s",
                [
                    Q(_p95("ingest_delay_seconds"), "ingest"),
                    Q(_p95("batch_queue_seconds"), "queue"),
                    Q(_p95("inference_seconds"), "inference"),
                    Q(_p95("e2e_latency_seconds"), "end to end"),
                ],
            )
        )
    )


def _inference(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Inference"))
        .with_panel(
            ts(
                "Inference batch size",
                "Windows per batched inference call: mean and p95.",
                "none",
                [
                    Q(
                        f"sum(rate({S}batch_size_sum{R})) / sum(rate({S}batch_size_count{R}))",
                        "mean",
                    ),
                    Q(_p95("batch_size"), "p95"),
                ],
            )
        )
        .with_panel(
            ts(
                "Inference time per call",
                "Duration of one batched inference call: p50, p95, p99.",
                "s",
                _quantiles("inference_seconds"),
            )
        )
    )


def _kafka_and_reliability(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Kafka and reliability"))
        .with_panel(
            ts(
                "Consumer lag by partition",
                "Sample messages behind the high watermark of each partition.",
                "none",
                [Q(f"sum by (partition) ({S}consumer_lag)", "partition {{partition}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Dead letters by reason",
                "Messages sent to the dead-letter topic per minute, by reason.",
                "none",
                [Q(f"sum by (reason) (increase({S}deadletters_total[1m]))", "{{reason}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Late and dropped samples",
                "Samples the windower dropped per second (late: behind the allowed "
                "lateness; duplicate: seen before).",
                "short",
                [Q(f"sum by (reason) (rate({S}samples_dropped_total{R}))", "{{reason}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Checkpoints/s",
                "Checkpoints (windower state and offsets) written to Redis per second.",
                "ops",
                [Q(f"sum(rate({S}checkpoints_total{R}))", "checkpoints")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Checkpoint write time (p95)",
                "Time to snapshot the windower state and write one checkpoint, p95.",
                "s",
                [Q(_p95("checkpoint_seconds"), "p95")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Model loads and swaps since worker start",
                "Model loads and hot-swap attempts of the workers since they started, by "
                "result (swapped, refused).",
                "none",
                [Q(f"sum by (result) ({S}model_swaps_total)", "{{result}}")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Workers and replay devices",
                "Stream workers up, and virtual devices the replay is sending.",
                "none",
                [
                    Q(f'sum(up{{job="{STREAM_JOB}"}})', "workers up"),
                    Q(f'sum(up{{job="{REPLAY_JOB}"}})', "replays up"),
                    Q("sum(wearmon_replay_devices)", "replay devices"),
                ],
                span=8,
            )
        )
    )


def _recovery(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(row("Failures and recovery"))
        .with_panel(
            ts(
                "Batch failures and isolated windows",
                "Failed batch attempts per minute (inference, Kafka or Redis; retried with "
                "backoff), windows dead-lettered because their batch failed deterministically, "
                "and dead letters that could not be delivered.",
                "none",
                [
                    Q(
                        f"sum by (kind) (increase({S}batch_failures_total[1m])) "
                        'or label_replace(vector(0), "kind", "none", "", "")',
                        "failed batches {{kind}}",
                    ),
                    Q(f"sum(increase({S}isolated_windows_total[1m]))", "isolated windows"),
                    Q(
                        f"sum(increase({S}deadletters_undelivered_total[1m]))",
                        "undelivered dead letters",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Back-pressure",
                "Workers that stopped taking sample messages because too many windows wait "
                "for inference (1 per paused worker).",
                "none",
                [Q(f"sum({S}backpressure)", "paused workers")],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Replays, seeks and evictions",
                "Per minute: windows already in Redis (a replay after a crash or rebalance), "
                "partitions sought back to their checkpoint, idle devices evicted from memory "
                "and device states retired from the checkpoint.",
                "none",
                [
                    Q(
                        f"sum(increase({S}duplicate_windows_suppressed_total[1m]))",
                        "duplicate windows",
                    ),
                    Q(f"sum(increase({S}checkpoint_seeks_total[1m]))", "checkpoint seeks"),
                    Q(f"sum(increase({S}devices_evicted_total[1m]))", "devices evicted"),
                    Q(f"sum(increase({S}devices_retired_total[1m]))", "devices retired"),
                    Q(
                        f"sum(increase({S}episode_windows_stored_total[1m]))",
                        "windows counted in episodes as stored",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            ts(
                "Participants without data",
                "Devices whose last sample message is older than 5, 10, 30 and 60 minutes, "
                "summed over the workers (counted until a device's state is retired). The "
                "alert WearmonParticipantSilent fires on the 10-minute count; the Participant "
                "dashboard's 'Last data' tells which participant.",
                "none",
                [Q(f"sum by (minutes) ({S}silent_devices)", "silent > {{minutes}} min")],
                span=24,
            )
        )
    )


def build() -> dashboard.Dashboard:
    d = new_dashboard(
        UID,
        "wearmon / Pipeline",
        "Throughput, end-to-end latency, inference, Kafka lag and reliability of the stream.",
    )
    parts = (_overview, _throughput, _latency, _inference, _kafka_and_reliability, _recovery)
    for part in parts:
        d = part(d)
    return d
