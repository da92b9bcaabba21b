"""The Faust application of ``wearmon process``, built from Settings by :func:`build_app`.

Faust does the consuming, the consumer group and the offset commits. Sample messages go
from Faust's fetch loop straight to :meth:`Processor.handle` (no per-event stream, see
:mod:`stream_processor.faust_adapter`, the one home of Faust internals); a message is acked
(so its offset may be committed) only when a Redis checkpoint covers it (see
:mod:`stream_processor.processor` and docs/stream.md). The batch loop is a Faust task;
inference, Kafka sends and Redis writes run in one worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from stream_processor import faust_adapter as fa
from stream_processor.metrics import StreamMetrics
from stream_processor.models import ModelManager
from stream_processor.processor import (
    Job,
    JobResult,
    Processor,
    is_transient,
    retry_delay,
)
from stream_processor.sinks import RedisSink, StaleCheckpoint
from wearmon.errors import SchemaError
from wearmon.schemas import decode_labels
from wearmon.settings import KafkaSettings, Settings
from wearmon.signals.types import GRID_MS

log = logging.getLogger(__name__)


#: Bytes per partition per fetch. Faust's default (1 MiB, about 800 sample messages) caps a
#: worker at about 2,600 messages/s on this machine however idle its CPU (measured: a bare
#: noack agent over a backlog, 2,600 msgs/s with 1 MiB, 9,200 with 8 MiB, CPU-bound from
#: there; aiokafka alone reads 76,000/s). Memory: at most this much per assigned partition.
FETCH_BYTES_PER_PARTITION = 8 * 1024 * 1024

#: The event loop shares the GIL with the inference and Kafka consumer threads. With Python's
#: default switch interval (5 ms) a busy thread keeps the GIL that long whenever the loop
#: wakes up for I/O. Measured at 1,000 devices with two workers: message-to-cut-window p99
#: 2.0 s with 5 ms, 0.2 s with 0.5 ms (docs/stream.md).
GIL_SWITCH_S = 0.0005


@dataclass
class Worker:
    """Everything a running worker holds (returned by :func:`build_app` for tests/bench)."""

    app: faust.App
    processor: Processor
    models: ModelManager
    metrics: StreamMetrics
    sink: RedisSink


def kafka_producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    conf = settings.kafka.confluent_config()
    conf.update(
        {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"}
    )
    return Producer(conf)


def faust_credentials(k: KafkaSettings) -> Any:
    """The Faust ``broker_credentials`` for ``settings.kafka`` (None for PLAINTEXT).

    Same settings as the confluent-kafka clients (:meth:`KafkaSettings.confluent_config`):
    SSL and SASL_SSL verify the broker against ``ssl_cafile`` (the system CAs when unset);
    SASL mechanisms PLAIN (default), SCRAM-SHA-256/512 or GSSAPI.
    """
    import ssl

    proto = k.security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = None
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(k.ssl_cafile) if k.ssl_cafile else None,
        )
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    mechanism = (k.sasl_mechanism or "PLAIN").upper()
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(ssl_context=ctx)
    return faust.SASLCredentials(
        username=k.sasl_username,
        password=None if k.sasl_password is None else k.sasl_password.get_secret_value(),
        ssl_context=ctx,
        mechanism=mechanism,
    )


def _faust_datadir(settings: Settings) -> str:
    """``data_dir/faust/<app id>``, made here (Faust creates only the last folder of it),
    braces escaped (Faust formats the path with its config)."""
    path = (settings.data_dir / "faust" / settings.stream.app_id).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path).replace("{", "{{").replace("}", "}}")


def build_app(
    settings: Settings,
    *,
    metrics: StreamMetrics | None = None,
    models: ModelManager | None = None,
    sink: RedisSink | None = None,
    producer: Any = None,
) -> Worker:
    """The Faust app with its agents and tasks; nothing connects until the worker starts."""
    metrics = metrics or StreamMetrics()
    models = models or ModelManager(settings, metrics=metrics)
    sink = sink or RedisSink.from_settings(settings)
    producer = producer if producer is not None else kafka_producer(settings)
    proc = Processor(settings, sink=sink, producer=producer, model_manager=models, metrics=metrics)
    k = settings.kafka
    s = settings.stream
    app = fa.App(
        settings.stream.app_id,
        broker=k.faust_broker_url(),
        broker_credentials=faust_credentials(k),
        store="memory://",
        # Faust's own folder (its table state; memory store: nearly empty) under the data
        # directory, not "<app id>-data" in whatever directory the worker was started in
        datadir=_faust_datadir(settings),
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        topic_allow_declare=k.create_topics,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_every=10_000,
        stream_buffer_maxsize=8192,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
    )

    def raw_keyed_topic(name: str) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=k.partitions,
        )

    samples = raw_keyed_topic(k.samples_topic)
    labels = raw_keyed_topic(k.labels_topic)
    app.topic(k.predictions_topic, partitions=k.partitions, value_serializer="raw")
    app.topic(k.deadletter_topic, partitions=1, value_serializer="raw")
    app.topic(k.episodes_topic, partitions=k.partitions, value_serializer="raw")
    # inference and the writes of a batch run in one thread, one batch after the other.
    # Measured: a second thread for the writes (overlapping the next inference) made it
    # worse: its Python work (Redis commands, JSON) competes for the GIL with the event
    # loop and the Kafka consumer thread (1,000 devices: message-to-window p50 0.1 -> 1 s).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wearmon-infer")
    wake = asyncio.Event()
    window_ms = settings.signal.window * GRID_MS

    loops: list[asyncio.AbstractEventLoop] = []

    def _rebalance_started() -> None:  # called from the consumer thread
        proc.rebalancing = True
        if loops:
            loops[0].call_soon_threadsafe(wake.set)

    app.rebalance_hook = _rebalance_started
    stopping = asyncio.Event()
    app.stop_deadline_s = s.shutdown_timeout_s + 20.0

    def _stopping() -> None:
        stopping.set()
        wake.set()

    app.stop_hook = _stopping

    seeking: dict[int, int] = {}  # partition -> first offset fetched before its seek back
    sought: set[int] = set()  # partitions sought back since assigned (at most once each)
    topic_id_read: list[bool] = []

    async def _load_checkpoint(p: int) -> tuple[int | None, dict[str, bytes], bool]:
        """The partition's checkpoint, retried with backoff while Redis is unreachable (the
        partition's messages wait meanwhile)."""
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(proc.load_checkpoint, p)
            except Exception as exc:
                attempt += 1
                if not is_transient(exc) or stopping.is_set():
                    raise
                delay = retry_delay(attempt, s.retry_base_s, s.retry_max_s)
                log.error("checkpoint of partition %d not readable, retrying in %.1f s: %s",
                          p, delay, exc)  # fmt: skip
                await asyncio.sleep(delay)

    async def _ensure_loaded(message: Any) -> bool:
        """Load the checkpoint of the message's partition on its first message. When the
        first message is past the checkpoint (Redis lost data or was restored from an older
        snapshot: Kafka's committed offset is ahead), seek back to the checkpoint offset + 1
        first. False: drop this message (fetched before the seek; it is read again). Until
        the seek takes effect, messages from the first one fetched on are still coming."""
        p = message.partition
        if p in seeking:
            if message.offset >= seeking[p]:
                return False
            del seeking[p]
        if proc.is_loaded(p):
            return True
        if not topic_id_read:  # once per process: every checkpoint key of it is the same
            proc.topic_id = await asyncio.to_thread(topic_id_of, settings, k.samples_topic)
            topic_id_read.append(True)
        offset, states, legacy = await _load_checkpoint(p)
        if proc.is_loaded(p):
            return True
        resume = -1 if offset is None else offset
        if message.offset > resume + 1:
            earliest = (await app.consumer.earliest_offsets(message.tp)).get(message.tp) or 0
            if p not in sought and earliest < message.offset:
                resume = max(resume, earliest - 1)
                sought.add(p)
                seeking[p] = message.offset
                metrics.seeks.inc()
                log.warning(
                    "partition %d: checkpoint at offset %d is behind the first message %d "
                    "(Kafka committed ahead of Redis): seeking back to %d",
                    p, resume, message.offset, resume + 1,
                )  # fmt: skip
                await fa.seek(app, message.tp, resume + 1)
                return False
            log.error(
                "partition %d: offsets %d..%d are no longer in Kafka (retention)",
                p, resume + 1, message.offset - 1,
            )  # fmt: skip
        proc.restore(p, offset, states, legacy)
        return True

    consumer_ack = fa.acker(app)

    def take(message: Any) -> None:
        """Process one sample message of the current generation (flow open, partition
        loaded): track it as pending, hand it to the processor, ack what may be acked."""
        if not message.tracked:  # pending ack: a rebalance waits for it (stream_wait_empty)
            message.tracked = True
            app.consumer.track_message(message)
        if proc.rebalancing:
            wake.set()
        idle = len(proc.batcher) == 0
        try:
            if proc.handle(message.partition, message.offset, message.key, message.value, message):
                consumer_ack(message)
        except Exception:  # a bug, not a bad message: log, keep consuming
            log.exception(
                "failed to process %s[%d]@%d", k.samples_topic, message.partition, message.offset
            )
        if (idle and len(proc.batcher)) or proc.batcher.full:
            wake.set()  # the batch loop recomputes its deadline

    def take_now(message: Any) -> bool:
        """The fast path, without awaiting: False when the message needs :func:`on_sample`
        (flow suspended for a rebalance, or its partition's checkpoint not loaded yet)."""
        consumer: Any = app.consumer
        if not app.flow_control.is_active() or consumer.suspend_flow.is_set():
            return False
        if message.generation_id != app.consumer_generation_id:
            return True  # fetched before a rebalance: its partition's owner reads it again
        if not proc.is_loaded(message.partition) or proc.backlogged:
            return False
        take(message)
        return True

    async def on_sample(message: Any) -> None:
        """The slow path, through Faust's per-message callback."""
        await app.flow_control.acquire()  # closed while a rebalance is under way
        if message.generation_id != app.consumer_generation_id:
            return
        if not await _ensure_loaded(message):
            return
        if proc.backlogged:  # back-pressure: no more messages until the windows drain
            metrics.backpressure.set(1)
            while proc.backlogged and not stopping.is_set():
                wake.set()
                await asyncio.sleep(0.05)
            metrics.backpressure.set(0)
        take(message)

    fa.deliver_directly(app, samples, on_sample)
    fa.take_in_fetch(app, samples.get_topic_name(), take_now, seeking)
    fa.fetch_max_wait(app, k.consumer_fetch_max_wait_ms)

    @app.agent(labels, name="wearmon-labels")
    async def consume_labels(stream: Any) -> None:
        async for event in stream.events():
            try:
                if event.key is None:
                    raise SchemaError("label message has no key (the device id is the key)")
                seg = decode_labels(event.value, now_ms=proc.clock())
            except SchemaError as exc:
                proc.deadletters.send(k.labels_topic, event.value, event.key, str(exc), "label")
                continue
            metrics.labels_in.inc()
            scored = await _write_label(seg, event)
            for version, ok in scored:
                metrics.scored.labels(
                    model_version=version, result="correct" if ok else "wrong"
                ).inc()

    async def _write_label(seg: Any, event: Any) -> list[tuple[str, bool]]:
        """Store a label segment, retrying transient Redis errors with backoff; a segment
        that fails otherwise (or too often) is dead-lettered."""
        for attempt in range(1, s.batch_attempts + 1):
            try:
                return await asyncio.to_thread(
                    sink.write_label, seg.device, seg.start_ms, seg.end_ms, seg.label, window_ms
                )
            except Exception as exc:
                if not is_transient(exc) or attempt == s.batch_attempts:
                    proc.deadletters.send(
                        k.labels_topic, event.value, event.key, f"not stored: {exc}", "label"
                    )
                    return []
                await asyncio.sleep(retry_delay(attempt, s.retry_base_s, s.retry_max_s))
        return []

    async def _rewind(job: Job, keys: list[str]) -> None:
        """Redis came back with older checkpoints than this worker wrote (restarted from an
        older snapshot, or flushed): drop those partitions' state and pending work, and seek
        them back to the checkpoint Redis has, so the lost windows are written again."""
        parts = [p for p in list(proc.partitions) if proc.checkpoint_key(p) in keys]
        log.error(
            "Redis holds older checkpoints than written for partitions %s: reading them "
            "again from there", parts,
        )  # fmt: skip
        rewound = proc.rewind(job, parts)
        for p, next_offset in rewound.items():  # before any await: the fetch loop goes on
            seeking[p] = next_offset
            sought.add(p)
            metrics.seeks.inc()
        for p in rewound:
            offset, _, _ = await _load_checkpoint(p)
            await fa.seek(app, TP(k.samples_topic, p), (-1 if offset is None else offset) + 1)

    async def run_job(job: Job) -> JobResult | None:
        """Execute a job, retrying with exponential backoff (``stream.retry_base_s`` doubling
        to ``stream.retry_max_s``) while Redis or Kafka are unavailable; after
        ``stream.batch_attempts`` deterministic failures the job is isolated
        (:meth:`Processor.execute_isolated`). None: the worker is stopping."""
        loop = asyncio.get_running_loop()
        attempt, isolated = 0, None
        while not stopping.is_set():
            try:
                if isolated is None:
                    return await loop.run_in_executor(executor, proc.execute, job)
                return await loop.run_in_executor(executor, proc.execute_isolated, job, isolated)
            except StaleCheckpoint as exc:
                await _rewind(job, exc.keys)
                continue
            except Exception as exc:
                attempt += 1
                transient = is_transient(exc)
                metrics.batch_failures.labels(kind="transient" if transient else "error").inc()
                if not transient and attempt >= s.batch_attempts and isolated is None:
                    isolated = f"{type(exc).__name__}: {exc}"
                    log.error("batch failed %d times, isolating it: %s", attempt, isolated)
                    continue
                delay = retry_delay(attempt, s.retry_base_s, s.retry_max_s)
                log.error("batch failed (attempt %d), retrying in %.1f s: %s", attempt, delay, exc)
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
        return None

    @app.task
    async def batch_loop() -> None:
        loop = asyncio.get_running_loop()
        loops.append(loop)
        await models.wait_first()
        while True:
            job = proc.cut()
            if job is None:
                delay = proc.seconds_until_work(proc.clock())
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=max(0.001, delay))
                continue
            result = await run_job(job)
            if result is None:
                return  # stopping: these messages are not acked, the next owner reads them
            for token in proc.complete(job, result):
                consumer_ack(token)

    @app.task
    async def model_watch() -> None:
        await models.run(settings.redis)

    @app.timer(interval=2.0)
    async def gauges() -> None:
        update_lag(app.consumer, proc, metrics, k.samples_topic)
        try:
            acc = await asyncio.to_thread(sink.accuracy)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.debug("live accuracy not readable: %s", exc)  # Redis down: the batches say it
            return
        for version, (correct, total) in acc.items():
            if total:
                metrics.live_accuracy.labels(model_version=version).set(correct / total)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        revoked = args[0]
        parts = [tp.partition for tp in revoked if tp.topic == k.samples_topic]
        proc.drop_partitions(parts)
        for p in parts:
            sought.discard(p)
            seeking.pop(p, None)  # no stale lag for a partition another worker now owns
            with contextlib.suppress(KeyError):
                metrics.consumer_lag.remove(str(p))
        log.info("partitions revoked: %s", sorted(parts))

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        assigned = args[0]
        proc.rebalancing = False
        log.info(
            "partitions assigned: %s",
            sorted(tp.partition for tp in assigned if tp.topic == k.samples_topic),
        )

    return Worker(app=app, processor=proc, models=models, metrics=metrics, sink=sink)


def update_lag(consumer: Any, proc: Processor, metrics: StreamMetrics, topic: str) -> None:
    """``consumer_lag{partition}``: messages of ``topic`` behind the partition's high
    watermark, per partition this worker owns and has started (handled a message of):
    ``highwater - 1 - last handled offset``. Handled, not committed: commits wait for the
    next checkpoint (at most ``stream.checkpoint_s`` later)."""
    for tp in consumer.assignment():
        if tp.topic != topic or tp.partition not in proc.partitions:
            continue
        hw = consumer.highwater(tp)
        if hw is not None and hw >= 0:
            metrics.consumer_lag.labels(partition=str(tp.partition)).set(
                max(0, hw - 1 - proc.partitions[tp.partition].offset)
            )


def topic_id_of(settings: Settings, topic: str, timeout: float = 10.0) -> str | None:
    """Kafka's id of ``topic`` (a recreated topic gets a new one); None if not readable."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.confluent_config())
    try:
        fut = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
        return str(fut.result(timeout=timeout).topic_id)
    except Exception as exc:
        log.warning("topic id of %s not readable (%s): checkpoints keyed without it", topic, exc)
        return None


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the topics the worker reads and writes when missing (``kafka.create_topics``;
    when off, a missing one is a ConfigError line): the replay's own check (one line naming a
    TLS/SASL failure, at once), one dead-letter partition.
    Faust's one internal topic (its assignor's leader topic, no tables here) is created with
    them, replicated like them: Faust would create it with ``topic_replication_factor``."""
    from producers.kafka_sink import ensure_topics as ensure

    k = settings.kafka
    leader = f"{settings.stream.app_id}-__assignor-__leader"  # Faust's LeaderAssignor
    topics = [
        k.samples_topic, k.labels_topic, k.predictions_topic, k.episodes_topic,
        k.deadletter_topic, leader,
    ]  # fmt: skip
    ensure(k, topics, timeout_s=timeout, partitions={k.deadletter_topic: 1, leader: 1})


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Start one worker in the foreground until stopped (``wearmon process``)."""
    import os

    from prometheus_client import start_http_server

    # TensorFlow's thread pools, read when TF starts: one thread each. Measured with the
    # thesis model on 2 cores: same latency per batch, 10-30 % less CPU per window, and the
    # other core stays with the event loop. The TF_NUM_* variables override it.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    sys.setswitchinterval(GIL_SWITCH_S)
    # always: it fails fast in one line on a TLS/SASL error or, with kafka.create_topics off,
    # on a missing topic (Faust's own clients would retry, then end in a traceback)
    ensure_topics(settings)
    w = build_app(settings)
    w.metrics.watch_gc()
    port = settings.metrics.stream_port
    try:
        start_http_server(port, addr=settings.metrics.host, registry=w.metrics.registry)
        log.info("metrics on %s:%d/metrics", settings.metrics.host, port)
    except OSError as exc:
        log.warning("metrics endpoint :%d unavailable (%s); running without it", port, exc)
    worker = faust.Worker(w.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
