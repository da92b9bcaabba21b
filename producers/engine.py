"""The replay loop: plan -> pacing -> encode -> Kafka, with stats, progress and metrics."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from producers.config import ReplayConfig, check_recordings
from producers.kafka_sink import KafkaSink, ensure_topics
from producers.metrics import ReplayMetrics
from producers.pacing import LagStats, Pacer
from producers.schedule import PlannedBatch, live_anchor, plan_replay, timeline_end_ms
from wearmon.errors import SchemaError
from wearmon.schemas import MAX_MESSAGE_BYTES, encode
from wearmon.settings import Settings
from wearmon.signals.types import Recording

log = logging.getLogger(__name__)

#: how often (seconds) the progress hook and the metrics are updated
REFRESH_S = 0.25


@dataclass
class ReplayStats:
    """What a replay did. ``ok`` is False when any message was not delivered."""

    devices: int = 0
    recordings: int = 0
    samples: int = 0
    samples_by_sensor: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    label_messages: int = 0
    bytes: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    timeline_ms: float = 0.0
    timeline_end_ms: int | None = None
    speed: float = 1.0
    interrupted: bool = False
    injected: Counter[str] = field(default_factory=Counter)
    lag: LagStats = field(default_factory=LagStats)
    anchor_ms: int = 0
    #: wall seconds until the last message was handed over (elapsed_s includes the flush)
    send_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.undelivered == 0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        total = self.messages + self.label_messages
        return total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Replay time covered per wall second (1.0 = real time)."""
        return self.timeline_ms / 1000.0 / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "recordings": self.recordings,
            "samples": self.samples,
            "messages": self.messages,
            "label_messages": self.label_messages,
            "bytes": self.bytes,
            "delivered": self.delivered,
            "failed": self.failed,
            "undelivered": self.undelivered,
            "elapsed_s": round(self.elapsed_s, 3),
            "samples_per_s": round(self.samples_per_s, 1),
            "messages_per_s": round(self.messages_per_s, 1),
            "realtime_factor": round(self.realtime_factor, 2),
            "lag_p50_ms": round(self.lag.quantile(0.5) * 1000, 2),
            "lag_p99_ms": round(self.lag.quantile(0.99) * 1000, 2),
            "lag_max_ms": round(self.lag.max_s * 1000, 2),
            "injected": dict(self.injected),
            "interrupted": self.interrupted,
        }


ProgressHook = Callable[[ReplayStats, float], None]
"""Called about every REFRESH_S with the stats and the current lag (seconds)."""


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the loop ends, outstanding messages are flushed);
    a second SIGINT interrupts at once. Only in the main thread; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("signal %d: stopping, flushing outstanding messages", signum)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def replay(
    settings: Settings,
    recordings: Sequence[Recording],
    cfg: ReplayConfig | None = None,
    *,
    stop: threading.Event | None = None,
    progress: ProgressHook | None = None,
    metrics: ReplayMetrics | None = None,
    anchor_ms: int | None = None,
    handle_signals: bool = False,
    flush_timeout_s: float = 30.0,
    preflight_timeout_s: float = 5.0,
    sink: KafkaSink | None = None,
) -> ReplayStats:
    """Replay ``recordings`` into ``settings.kafka.samples_topic`` (labels into
    ``labels_topic``) and return what happened. Raises KafkaUnavailableError (broker
    unreachable) or ConfigError (missing topic, creation disabled) before sending anything.

    ``stop`` ends the replay early (outstanding messages are still flushed). ``anchor_ms``
    fixes the start of live timestamps (default: now, rounded down to a window hop).
    """
    cfg = cfg or ReplayConfig()
    check_recordings(recordings)
    kafka = settings.kafka
    has_labels = cfg.send_labels and (
        any(r.labels for r in recordings) or any(r.labels for r in cfg.drift.donor)
    )
    topics = [kafka.samples_topic] + ([kafka.labels_topic] if has_labels else [])
    ensure_topics(kafka, topics, timeout_s=preflight_timeout_s)

    stop = stop or threading.Event()
    stats = ReplayStats(
        devices=cfg.devices,
        recordings=len(recordings),
        speed=cfg.speed,
        timeline_end_ms=timeline_end_ms(recordings, cfg),
    )
    if metrics is not None:
        metrics.devices.set(cfg.devices)

    def delivered(ok: bool, size: int) -> None:
        if ok:
            stats.delivered += 1
        else:
            stats.failed += 1

    own_sink = sink is None
    sink = sink or KafkaSink(kafka, on_delivery=delivered)
    if anchor_ms is None:
        anchor_ms = live_anchor(live_start_ms(int(time.time() * 1000), stats.timeline_end_ms, cfg))
    stats.anchor_ms = anchor_ms
    plan = plan_replay(recordings, cfg, anchor_ms=stats.anchor_ms, counts=stats.injected)
    ctx = stop_on_signals(stop) if handle_signals else contextlib.nullcontext()
    with ctx:
        t_start = time.monotonic()
        try:
            _run(plan, sink, cfg, settings, stats, stop, progress, metrics)
        finally:
            stats.send_s = stats.elapsed_s
            stats.undelivered = sink.flush(flush_timeout_s)
            stats.elapsed_s = time.monotonic() - t_start
            if not own_sink:
                stats.delivered, stats.failed = sink.stats.delivered, sink.stats.failed
            stats.first_error = sink.stats.first_error
            if progress is not None:
                progress(stats, 0.0)
            if metrics is not None:
                _push_metrics(metrics, stats, {}, 0.0, len(sink))
    log.info("replay done: %s", stats.summary())
    return stats


def live_start_ms(now_ms: int, timeline_ms: int | None, cfg: ReplayConfig) -> int:
    """Where live timestamps start: now, or earlier for a replay faster than real time, so
    that no sample is ever stamped ahead of the wall clock when it is sent (the worker
    dead-letters samples more than ``MAX_FUTURE_SKEW_MS`` ahead of its clock). A timeline of
    ``T`` ms sent at speed ``s`` starts ``T (1 - 1/s)`` ms ago. A loop without a duration has
    no known end: it starts now."""
    if cfg.timestamps != "live" or timeline_ms is None or not cfg.speed > 1:
        return now_ms
    lead = timeline_ms if math.isinf(cfg.speed) else timeline_ms * (1.0 - 1.0 / cfg.speed)
    return now_ms - int(lead)


def _run(
    plan: Iterator[Any],
    sink: KafkaSink,
    cfg: ReplayConfig,
    settings: Settings,
    stats: ReplayStats,
    stop: threading.Event,
    progress: ProgressHook | None,
    metrics: ReplayMetrics | None,
) -> None:
    samples_topic, labels_topic = settings.kafka.samples_topic, settings.kafka.labels_topic
    clock, wall = time.monotonic, time.time
    pacer = Pacer(cfg.speed, clock())
    paced = pacer.paced
    produce, poll, lag = sink.produce, sink.poll, stats.lag
    by_sensor = stats.samples_by_sensor
    next_refresh = pacer.start + REFRESH_S
    pushed: dict[str, float] = {}
    cur_lag = 0.0
    for n, item in enumerate(plan, 1):
        if paced:
            due = pacer.due_at(item.due_ms)
            wait = due - clock()
            while wait > 0 and not stop.is_set():
                poll(min(wait, 0.05))
                wait = due - clock()
        if stop.is_set():
            stats.interrupted = True
            break
        if type(item) is PlannedBatch:
            value = encode(item.message(int(wall() * 1000)))
            if len(value) > MAX_MESSAGE_BYTES:  # the worker would dead-letter it
                raise SchemaError(
                    f"sample message of {len(value)} bytes for {item.device} exceeds "
                    f"{MAX_MESSAGE_BYTES} bytes: use smaller batches"
                )
            produce(samples_topic, item.device, value)
            k = len(item.t_ms)
            stats.samples += k
            by_sensor[item.sensor] += k
            stats.messages += 1
        else:
            value = encode(item.segment)
            produce(labels_topic, item.device, value)
            stats.label_messages += 1
        stats.bytes += len(value)
        if paced:
            cur_lag = clock() - due
            lag.add(cur_lag)
        if n % 64 == 0:
            poll(0)
            now = clock()
            if now >= next_refresh:
                next_refresh = now + REFRESH_S
                stats.elapsed_s = now - pacer.start
                stats.timeline_ms = item.due_ms
                if progress is not None:
                    progress(stats, cur_lag)
                if metrics is not None:
                    _push_metrics(metrics, stats, pushed, cur_lag, len(sink))
    now = clock()
    stats.elapsed_s = now - pacer.start
    if not stats.interrupted:
        end = stats.timeline_end_ms
        stats.timeline_ms = float(end) if end is not None else stats.timeline_ms
    elif paced:
        stats.timeline_ms = min(pacer.position_ms(now), stats.timeline_ms or math.inf)


def _push_metrics(
    m: ReplayMetrics, stats: ReplayStats, pushed: dict[str, float], lag_s: float, in_flight: int
) -> None:
    """Counters advanced by the difference since the last push (cheap, every REFRESH_S)."""

    def inc(key: str, value: float, counter: Any) -> None:
        d = value - pushed.get(key, 0.0)
        if d > 0:
            counter.inc(d)
            pushed[key] = value

    for sensor, v in stats.samples_by_sensor.items():
        inc(f"s:{sensor}", v, m.samples.labels(sensor=sensor))
    inc("m:samples", stats.messages, m.messages.labels(kind="samples"))
    inc("m:labels", stats.label_messages, m.messages.labels(kind="labels"))
    inc("bytes", stats.bytes, m.bytes)
    inc("delivered", stats.delivered, m.delivered)
    inc("failed", stats.failed, m.failed)
    for kind, v in stats.injected.items():
        inc(f"i:{kind}", v, m.injected.labels(kind=kind))
    m.lag.set(max(0.0, lag_s))
    m.in_flight.set(in_flight)
