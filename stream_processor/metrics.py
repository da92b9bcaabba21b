"""Prometheus metrics of a stream worker, on a private registry (no device ids as labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    0.9,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
#: the thresholds of ``silent_devices`` (label ``minutes``): an alert picks one
SILENT_MINUTES = (5, 10, 30, 60)


class StreamMetrics:
    """All metrics of one worker; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        p = "wearmon_stream_"
        self.messages_in = Counter(p + "messages_in", "Sample messages consumed", registry=r)
        self.samples_in = Counter(p + "samples_in", "Samples consumed", ["sensor"], registry=r)
        self.windows_emitted = Counter(p + "windows_emitted", "Windows cut", registry=r)
        self.windows_skipped = Counter(
            p + "windows_skipped", "Windows not classified", ["reason"], registry=r
        )
        self.samples_dropped = Counter(
            p + "samples_dropped", "Samples dropped by the windower", ["reason"], registry=r
        )
        for reason in ("late", "duplicate"):  # at 0 from the start: a panel and a rate see a
            self.samples_dropped.labels(reason=reason)  # clean run as 0, not as no data
        self.batch_size = Histogram(
            p + "batch_size", "Windows per inference call", buckets=BATCH_BUCKETS, registry=r
        )

        def latency(name: str, doc: str) -> Histogram:
            return Histogram(p + name, doc, buckets=LATENCY_BUCKETS, registry=r)

        self.inference_seconds = latency(
            "inference_seconds", "Duration of one batched inference call"
        )
        self.e2e_seconds = latency(
            "e2e_latency_seconds",
            "From sent_ms of the message completing a window to its Redis write",
        )
        # the parts of the end-to-end latency: message to cut window, cut to batch start
        self.ingest_seconds = latency(
            "ingest_delay_seconds",
            "From sent_ms of the message completing a window to the window being cut",
        )
        self.queue_seconds = latency(
            "batch_queue_seconds", "From a window being cut to the start of its inference batch"
        )
        self.predictions = Counter(
            p + "predictions", "Predictions written", ["label", "model_version"], registry=r
        )
        self.confidence = Histogram(
            p + "confidence",
            "Confidence (probability of the predicted class) of the predictions written",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.silent_devices = Gauge(
            p + "silent_devices",
            "Devices of this worker (with state, until retired) without a message for more "
            "than `minutes` minutes",
            ["minutes"],
            registry=r,
        )
        for m in SILENT_MINUTES:
            self.silent_devices.labels(minutes=str(m)).set(0)
        self.episode_windows_stored = Counter(
            p + "episode_windows_stored",
            "Re-emitted windows counted in episodes as already stored in Redis (replay)",
            registry=r,
        )
        self.duplicates_suppressed = Counter(
            p + "duplicate_windows_suppressed",
            "Windows already in Redis (replay after a crash or rebalance)",
            registry=r,
        )
        self.scored = Counter(
            p + "scored_predictions",
            "Predictions joined with a ground-truth label",
            ["model_version", "result"],
            registry=r,
        )
        self.live_accuracy = Gauge(
            p + "live_accuracy", "Accuracy of labelled predictions", ["model_version"], registry=r
        )
        self.deadletters = Counter(
            p + "deadletters", "Messages sent to the dead-letter topic", ["reason"], registry=r
        )
        self.deadletters_undelivered = Counter(
            p + "deadletters_undelivered",
            "Dead letters that could not be delivered to the dead-letter topic",
            registry=r,
        )
        self.batch_failures = Counter(
            p + "batch_failures",
            "Failed attempts of a batch (inference, Kafka or Redis), retried with backoff",
            ["kind"],
            registry=r,
        )
        self.isolated_windows = Counter(
            p + "isolated_windows",
            "Windows dead-lettered because their batch failed deterministically",
            registry=r,
        )
        self.devices_evicted = Counter(
            p + "devices_evicted", "Idle devices evicted from memory", registry=r
        )
        self.devices_retired = Counter(
            p + "devices_retired",
            "Device states deleted from the checkpoint (idle past the retention)",
            registry=r,
        )
        self.seeks = Counter(
            p + "checkpoint_seeks",
            "Partitions sought back to their Redis checkpoint (older than Kafka's commit)",
            registry=r,
        )
        self.backpressure = Gauge(
            p + "backpressure",
            "1 while sample consumption is paused (too many windows waiting for inference)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag", "Messages behind the high watermark", ["partition"], registry=r
        )
        self.checkpoints = Counter(p + "checkpoints", "Checkpoints written", registry=r)
        self.checkpoint_seconds = latency(
            "checkpoint_seconds", "Time to snapshot and write a checkpoint"
        )
        self.model_swaps = Counter(
            p + "model_swaps", "Model hot-swap attempts", ["result"], registry=r
        )
        self.model_info = Gauge(
            p + "model_version_info",
            "The model version being served (1)",
            ["model_version"],
            registry=r,
        )
        self.devices = Gauge(p + "devices", "Devices with state in this worker", registry=r)
        self.labels_in = Counter(p + "labels_in", "Label segments consumed", registry=r)
        self.gc_seconds = Histogram(
            p + "gc_pause_seconds",
            "Python garbage collections (they stop the event loop)",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )

    def watch_gc(self) -> None:
        """Observe every garbage collection of this process in ``gc_pause_seconds``."""
        import gc
        import time

        started: list[float] = [0.0]
        by_gen = [self.gc_seconds.labels(generation=str(g)) for g in range(3)]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                by_gen[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(on_gc)
