"""Every use of a private Faust or aiokafka attribute by the worker, in one module.

The worker keeps Faust (consumer group, offsets, commits, flow control, rebalances) but
takes sample messages off its fetch path (docs/stream.md, "Benchmark"), which needs a few
internals of faust-streaming 0.15 and aiokafka 0.12. They are used only here, and
:func:`contract_problems` lists what they rely on; ``tests/unit/stream_processor/
test_faust_contract.py`` fails with that list when an upgrade breaks an assumption.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import faust

log = logging.getLogger(__name__)


class App(faust.App):
    """faust.App that asks for a checkpoint as soon as a rebalance starts, and that cannot
    take longer than ``stop_deadline_s`` to stop."""

    rebalance_hook: Any = None
    stop_hook: Any = None
    stop_deadline_s: float = 30.0

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if self.rebalance_hook is not None:
            self.rebalance_hook()

    async def on_stop(self) -> None:
        if self.stop_hook is not None:
            self.stop_hook()
        stop_watchdog(self.stop_deadline_s)
        await super().on_stop()


def stop_watchdog(deadline_s: float) -> None:
    """End the process if stopping takes longer than ``deadline_s`` (a Redis or Kafka that
    does not answer must not keep a stopping worker alive). Nothing is lost: offsets are
    committed only up to the last checkpoint, so the next owner reads the rest again."""
    import os
    import threading

    def watch() -> None:
        time.sleep(deadline_s)
        log.error("worker still stopping after %.0f s: exiting without finishing", deadline_s)
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watch, name="wearmon-stop-watchdog", daemon=True).start()


def acker(app: faust.App) -> Any:
    def ack(message: Any) -> None:
        message.ack(app.consumer)  # the offset may be committed once all before it are

    return ack


def deliver_directly(app: faust.App, topic: Any, handler: Any) -> None:
    """Subscribe ``topic`` and hand its messages to ``handler(message)`` from the consumer's
    fetch loop, without Faust's per-event machinery (Event, channel queue, Stream iteration,
    stream sensors): that path cost about as much CPU as all of wearmon's own work per
    sample message (py-spy profile of the worker, docs/stream.md). Offsets, acks, commits,
    flow control and rebalances stay Faust's: the handler acquires flow control, skips
    messages of an older consumer generation, tracks each message as pending until acked.
    Other topics keep the usual agents."""
    conductor: Any = app.topics
    build = conductor._build_handler  # per-TP callback factory (faust-streaming 0.15)

    def build_handler(tp: Any, channels: Any) -> Any:
        return handler if tp.topic == topic.get_topic_name() else build(tp, channels)

    conductor._build_handler = build_handler
    conductor.add(topic)


def take_in_fetch(app: faust.App, topic: str, take_now: Any, seeking: dict[int, int]) -> None:
    """Handle messages of ``topic`` inside the consumer's ``getmany`` when ``take_now`` can
    (no await needed); only the others reach Faust's fetch loop.

    Faust's loop awaits each message through ``Service.wait_first`` (four tasks and an
    ``asyncio.wait`` per message) and a lock: at 4,000 sample messages/s that was a quarter
    of the event loop's CPU (py-spy, docs/stream.md). What the loop does per message is
    kept for the messages taken here: messages below the read offset are skipped, the read
    offset advances, offset gaps are recorded as Faust records them (acks are enabled for
    the topic), the consumer commits every ``broker_commit_every`` acks, and the loop yields
    to other tasks every 100 messages. A partition in ``seeking`` (sought back to an older
    checkpoint) drops messages from the first one fetched before the seek on; its first
    message below that is the seek's: the read offset (which Faust's loop moved to the
    dropped message) is cleared for it. Relies on faust-streaming 0.15 internals
    (``Consumer.getmany``, ``_read_offset``, ``_add_gap``, ``_n_acked``); pinned."""
    consumer: Any = app.consumer
    fetch = consumer.getmany
    read_offset = consumer._read_offset
    acks_enabled_for = app.topics.acks_enabled_for

    async def getmany(timeout: float) -> Any:
        n = 0
        async for tp, message in fetch(timeout=timeout):
            if tp.topic != topic:
                yield tp, message
                continue
            offset = message.offset
            if seeking and tp.partition in seeking:
                if offset >= seeking[tp.partition]:
                    continue  # fetched before the seek back
                read_offset[tp] = None
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # read again after a seek; Faust's loop drops these as well
            if not take_now(message):
                yield tp, message
                continue
            if last and offset - last > 1 and acks_enabled_for(topic):
                await consumer._add_gap(tp, last + 1, offset)
            read_offset[tp] = offset
            commit_every = consumer._commit_every
            if commit_every is not None and consumer._n_acked >= commit_every:
                consumer._n_acked = 0
                await consumer.commit()
            n += 1
            if n % 100 == 0:
                await asyncio.sleep(0)

    consumer.getmany = getmany


def fetch_max_wait(app: faust.App, ms: int) -> None:
    """Let the broker hold a fetch at most ``ms`` (Faust fixes aiokafka's at 1,500 ms).

    aiokafka sends one fetch at a time per broker, for the partitions it holds no records
    of. While sample records wait in its buffer, that fetch asks only for the idle labels
    partitions, and the broker holds it for the whole wait: no sample was fetched for
    1.5 s (measured: batches of 3,200 messages 1.6-1.8 s old, then the backlog). The value
    is set on the aiokafka consumer Faust creates, before it starts (faust-streaming 0.15
    internals: ``Consumer._thread._create_worker_consumer``, aiokafka's
    ``_fetch_max_wait_ms``)."""
    consumer: Any = app.consumer
    thread: Any = consumer._thread
    create = thread._create_worker_consumer

    def create_worker_consumer(transport: Any) -> Any:
        consumer = create(transport)
        consumer._fetch_max_wait_ms = int(ms)
        return consumer

    thread._create_worker_consumer = create_worker_consumer


async def seek(app: faust.App, tp: Any, offset: int) -> None:
    """Seek ``tp`` to ``offset`` on the consumer's own thread (Faust's ``Consumer.seek``
    calls aiokafka from the event loop's thread, which raced with aiokafka's fetcher:
    ``KeyError`` in ``fetched_records``), and wait until the position is set."""
    consumer: Any = app.consumer
    await consumer._thread.seek_wait({tp: offset})


def contract_problems(app: faust.App | None = None) -> list[str]:
    """What this module relies on that the installed Faust/aiokafka do not provide (empty:
    all good). ``app``: a built (not started) app, to check instance attributes too."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.conductor import Conductor
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    problems = []

    def need(owner: Any, name: str, what: str) -> None:
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', type(owner).__name__)}.{name}: {what}")

    need(faust.App, "on_rebalance_start", "called when a rebalance starts (forced checkpoint)")
    need(faust.App, "on_stop", "service hook (stop watchdog)")
    need(Conductor, "_build_handler", "per-partition callback factory (deliver_directly)")
    need(Conductor, "acks_enabled_for", "acks of the samples topic (take_in_fetch)")
    need(Consumer, "getmany", "the fetch generator wrapped by take_in_fetch")
    need(Consumer, "_add_gap", "records offset gaps like Faust's fetch loop")
    need(Consumer, "track_message", "a message pending until acked")
    need(Consumer, "seek", "seek back to an older checkpoint")
    need(Consumer, "earliest_offsets", "the earliest offset still in Kafka")
    need(AIOKafkaConsumerThread, "_create_worker_consumer", "creates the aiokafka consumer")
    need(AIOKafkaConsumerThread, "seek_wait", "seek on the consumer's thread (seek)")
    init = inspect.getsource(AIOKafkaConsumer.__init__)
    if "self._fetch_max_wait_ms" not in init:
        problems.append("AIOKafkaConsumer._fetch_max_wait_ms: no longer set in __init__")
    fetch_loop = inspect.getsource(Consumer._drain_messages)
    for token in ("_read_offset", "set_read_offset(tp, offset)", "offset >= r_offset"):
        if token not in fetch_loop:
            problems.append(f"Consumer._drain_messages no longer has {token!r}")
    if app is not None:
        consumer: Any = app.consumer
        for name in ("_read_offset", "_n_acked", "_commit_every", "_thread"):
            need(consumer, name, "consumer instance attribute (take_in_fetch)")
    return problems
