"""The transport-independent core of a stream worker.

The Faust app (:mod:`stream_processor.app`) feeds :meth:`Processor.handle` one message at a
time and drives the batch cycle: :meth:`Processor.cut` (on the event loop, between messages)
takes the pending windows and, when a checkpoint is due, a consistent snapshot of the
changed per-device windower states and each partition's last offset; :meth:`Processor.execute`
(in a worker thread) runs one batched inference call, sends the predictions to Kafka, then
writes them, their features and the checkpoint to Redis in one atomic script;
:meth:`Processor.complete` (back on the loop) returns the messages that may now be acked.
Only then are their offsets committed. See docs/stream.md for why this is exactly-once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from stream_processor.deadletter import BadMessage, DeadLetterSender, check_arrays
from stream_processor.episodes import (
    EpisodeTracker,
    EpisodeWrite,
    Step,
    TrackerState,
    Window,
    message,
    write_of,
)
from stream_processor.metrics import SILENT_MINUTES, StreamMetrics
from stream_processor.sinks import Checkpoint, StaleCheckpoint, WriteOutcome, checkpoint_key
from wearmon.schemas import Prediction, encode
from wearmon.settings import Settings
from wearmon.signals.stream import IncrementalWindower
from wearmon.signals.types import GRID_MS
from wearmon.signals.windows import window_phase_ms

log = logging.getLogger(__name__)

#: How often idle devices are looked for (a scan over the devices of the worker).
EVICT_SCAN_MS = 5_000


@dataclass(frozen=True)
class PendingWindow:
    """A cut window waiting for inference."""

    device: str
    start_ms: int
    x: np.ndarray  # float32 (window, 6)
    sent_ms: int  # sent_ms of the message that completed it
    cut_ms: int


class MicroBatcher:
    """Collects windows of all devices; due when ``max_size`` are pending or the oldest has
    waited ``wait_ms``. Pure (time is passed in)."""

    def __init__(self, max_size: int, wait_ms: int) -> None:
        self.max_size = int(max_size)
        self.wait_ms = int(wait_ms)
        self._items: list[PendingWindow] = []
        self._oldest_ms: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Sequence[PendingWindow], now_ms: int) -> None:
        if not items:
            return
        if not self._items:
            self._oldest_ms = now_ms
        self._items.extend(items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_size

    def due(self, now_ms: int) -> bool:
        if not self._items:
            return False
        assert self._oldest_ms is not None
        return self.full or now_ms - self._oldest_ms >= self.wait_ms

    def seconds_until_due(self, now_ms: int) -> float | None:
        """None when empty; 0 when due now."""
        if not self._items or self._oldest_ms is None:
            return None
        if self.full:
            return 0.0
        return max(0.0, (self._oldest_ms + self.wait_ms - now_ms) / 1000.0)

    def take(self, limit: int | None = None) -> list[PendingWindow]:
        """Take the oldest ``limit`` windows (all when None)."""
        n = len(self._items) if limit is None else min(limit, len(self._items))
        out, self._items = self._items[:n], self._items[n:]
        self._oldest_ms = None if not self._items else self._oldest_ms
        return out


@dataclass
class PartitionState:
    """What a worker holds for one assigned partition of the samples topic."""

    partition: int
    restored_offset: int  # offsets <= this are already inside the restored state
    offset: int  # last offset handled
    checkpointed_offset: int
    devices: dict[str, IncrementalWindower] = field(default_factory=dict)
    #: device -> its episode tracker (created, restored and evicted with its windower)
    trackers: dict[str, EpisodeTracker] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    unacked: list[Any] = field(default_factory=list)
    #: device -> worker clock (ms, per batch cycle) of its last message
    seen: dict[str, int] = field(default_factory=dict)
    #: devices evicted from memory (state in the checkpoint) -> when last seen
    evicted: dict[str, int] = field(default_factory=dict)
    #: the offset of this partition's checkpoint in Redis as this worker last saw or wrote
    #: it (-1: none yet): a lower one in Redis means Redis went back in time
    written_offset: int = -1


@dataclass
class Job:
    """One batch cycle: windows to classify, the model to use, checkpoints to write after."""

    windows: list[PendingWindow]
    model: Any
    checkpoints: list[Checkpoint]
    acks: list[Any]
    cut_ms: int
    #: (checkpoint key, offset Redis must still hold) of every partition: the write is
    #: refused (StaleCheckpoint) when Redis holds an older one
    guards: list[tuple[str, int]] = field(default_factory=list)
    #: partition of each ack token
    ack_partitions: list[int] = field(default_factory=list)
    #: the predictions were delivered to Kafka (a retry only writes Redis)
    sent: list[Prediction] | None = None
    features: np.ndarray | None = None
    #: the episode tracker of every device with windows or a state in the job (taken at the
    #: cut: the checkpoint stores their state after this job) and when each was last seen
    trackers: dict[str, EpisodeTracker] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    #: classified, not yet delivered (a retry of the Kafka send reuses them)
    classified: tuple[list[Prediction], np.ndarray | None] | None = None
    #: each device's episode step for this job's windows (computed once, committed to the
    #: trackers when the job is written)
    steps: dict[str, Step] | None = None


@dataclass
class JobResult:
    predictions: list[Prediction]
    outcome: WriteOutcome
    inference_s: float
    done_ms: int


def encode_state(w: IncrementalWindower) -> bytes:
    """msgpack of the windower state, sample buffers as raw bytes (exact, cheap)."""
    return msgspec.msgpack.encode(w.to_state(binary=True))


def device_state(windower: bytes, tracker: TrackerState, seen_ms: int | None) -> bytes:
    """A device's checkpoint field: its windower state (:func:`encode_state`), its episode
    tracker's state and when it was last seen (worker clock, ms)."""
    return msgspec.msgpack.encode({"w": windower, "e": tracker.to_wire(), "s": seen_ms})


@dataclass(frozen=True)
class DeviceState:
    windower: IncrementalWindower
    tracker: TrackerState
    seen_ms: int | None


def decode_device(raw: bytes) -> DeviceState:
    """A device's checkpoint field; a windower state alone (written before the episodes):
    a fresh tracker, last seen unknown."""
    obj = msgspec.msgpack.decode(raw)
    if isinstance(obj, dict) and "w" in obj:
        w = IncrementalWindower.from_state(msgspec.msgpack.decode(obj["w"]))
        seen = obj.get("s")
        return DeviceState(w, TrackerState.from_wire(obj["e"]), None if seen is None else int(seen))
    return DeviceState(IncrementalWindower.from_state(obj), TrackerState(), None)


def decode_state(raw: bytes) -> IncrementalWindower:
    return decode_device(raw).windower


def now_ms() -> int:
    return int(time.time() * 1000)


class Processor:
    """Per-device windowing, micro-batching and the batch cycle (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sink: Any,
        producer: Any,
        model_manager: Any,
        metrics: StreamMetrics | None = None,
        clock: Callable[[], int] = now_ms,
        features: bool = True,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.producer = producer
        self.models = model_manager
        self.metrics = metrics or StreamMetrics()
        self.clock = clock
        self.features = features
        s = settings.stream
        self.topic = settings.kafka.samples_topic
        self.app_id = s.app_id
        self.batcher = MicroBatcher(s.batch_max, s.batch_wait_ms)
        self.checkpoint_ms = int(s.checkpoint_s * 1000)
        self.partitions: dict[int, PartitionState] = {}
        self.deadletters = DeadLetterSender(producer, settings.kafka.deadletter_topic, self.metrics)
        #: Kafka's id of the samples topic (set by the app before the first checkpoint load;
        #: None: checkpoints keyed without it)
        self.topic_id: str | None = None
        self.idle_evict_ms = int(s.idle_evict_s * 1000)
        self.retention_ms = int(s.state_retention_s * 1000)
        self.max_pending = s.max_pending_windows
        self._tick = clock()  # the clock of the current batch cycle (device last-seen)
        self._next_evict_ms = self._tick + EVICT_SCAN_MS
        self._last_checkpoint_ms = clock()
        self._force_checkpoint = False
        #: set while a rebalance is under way: checkpoint everything handled at once
        self.rebalancing = False
        # per-message counts, added to the counters by flush_metrics (once per cycle)
        self._n_messages = 0
        self._n_samples = {"accel": 0, "gyro": 0}
        self._samples_in = {s: self.metrics.samples_in.labels(sensor=s) for s in self._n_samples}

    # ------------------------------------------------------------------ partitions

    def is_loaded(self, partition: int) -> bool:
        return partition in self.partitions

    def checkpoint_key(self, partition: int) -> str:
        return checkpoint_key(self.app_id, self.topic, partition, self.topic_id)

    def load_checkpoint(self, partition: int) -> tuple[int | None, dict[str, bytes], bool]:
        """Read a partition's checkpoint from Redis (blocking: call from a thread):
        (offset, states, legacy), see :meth:`RedisSink.load_checkpoint`."""
        return self.sink.load_checkpoint(self.app_id, self.topic, partition, self.topic_id)

    def restore(
        self,
        partition: int,
        offset: int | None,
        states: dict[str, bytes],
        legacy: bool = False,
    ) -> None:
        """Install a partition's state from its checkpoint (offset None: start fresh;
        ``legacy``: read from an old key, so the next checkpoint writes every device)."""
        decoded = {d: decode_device(raw) for d, raw in states.items()}
        devices = {d: s.windower for d, s in decoded.items()}
        last = -1 if offset is None else int(offset)
        self.partitions[partition] = PartitionState(
            partition=partition,
            restored_offset=last,
            offset=last,
            checkpointed_offset=last - 1 if legacy else last,
            devices=devices,
            trackers={d: self._tracker(s.tracker) for d, s in decoded.items()},
            dirty=set(devices) if legacy else set(),
            # last seen as checkpointed (a restart does not make a silent device look new)
            seen={d: self._tick if s.seen_ms is None else s.seen_ms for d, s in decoded.items()},
            written_offset=-1 if legacy else last,
        )
        self.metrics.devices.set(sum(len(p.devices) for p in self.partitions.values()))
        log.info(
            "partition %d restored: %d devices, resuming after offset %d",
            partition,
            len(devices),
            last,
        )

    def drop_partitions(self, partitions: Sequence[int]) -> None:
        """Forget revoked partitions (their state lives on in the checkpoint)."""
        for p in partitions:
            self.partitions.pop(p, None)
        self.metrics.devices.set(sum(len(p.devices) for p in self.partitions.values()))

    def request_checkpoint(self) -> None:
        self._force_checkpoint = True

    # ------------------------------------------------------------------ messages

    def handle(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, token: Any
    ) -> bool:
        """Process one sample message. Returns True when ``token`` may be acked at once
        (a message already inside the restored state); otherwise it is acked after the
        checkpoint that covers it."""
        ps = self.partitions[partition]
        if offset <= ps.restored_offset:
            return True
        ps.offset = offset
        ps.unacked.append(token)
        self._n_messages += 1
        try:
            msg, t, xyz = check_arrays(value, key)
        except BadMessage as exc:
            self.deadletters.send(self.topic, value, key, exc.reason, exc.kind)
            log.debug("dead letter (%s) at %s[%d]@%d", exc.kind, self.topic, partition, offset)
            return False
        device = msg.device
        w = ps.devices.get(device)
        if w is None:
            w, ps.trackers[device] = self._device_of(ps, device)
            ps.devices[device] = w
            self.metrics.devices.inc()
        ps.seen[device] = self._tick
        c = w.counters
        late, dups, gaps = c["late_dropped"], c["duplicates"], c["skipped_gap"]
        wins = w.push(msg.sensor, t, xyz)
        ps.dirty.add(device)
        self._n_samples[msg.sensor] += t.shape[0]
        if c["late_dropped"] != late or c["duplicates"] != dups or c["skipped_gap"] != gaps:
            self._count_drops(
                c["late_dropped"] - late, c["duplicates"] - dups, c["skipped_gap"] - gaps
            )
        n = len(wins)
        if n:
            now = self.clock()
            self.metrics.windows_emitted.inc(n)
            sent = msg.sent_ms
            self.batcher.add(
                [
                    PendingWindow(device, int(wins.start_ms[i]), wins.x[i], sent, now)
                    for i in range(n)
                ],
                now,
            )
        return False

    def _device_of(
        self, ps: PartitionState, device: str
    ) -> tuple[IncrementalWindower, EpisodeTracker]:
        """A device not in memory: its checkpointed state if it was evicted, else new."""
        if ps.evicted.pop(device, None) is not None:
            try:
                raw = self.sink.load_state(self.checkpoint_key(ps.partition), device)
            except Exception as exc:  # Redis down: start it fresh (loses its open window)
                log.warning("state of evicted device not readable, starting fresh: %s", exc)
                raw = None
            if raw is not None:
                s = decode_device(raw)
                return s.windower, self._tracker(s.tracker)
        return self._new_windower(device), self._tracker(TrackerState())

    def _tracker(self, state: TrackerState) -> EpisodeTracker:
        sig = self.settings.signal
        return EpisodeTracker(max_gap_ms=sig.max_gap_ms, hop_ms=sig.hop * GRID_MS, state=state)

    def evict_idle(self, now: int) -> None:
        """Drop devices idle longer than ``stream.idle_evict_s`` from memory (their state
        is in the checkpoint: only devices without unsaved changes go), and mark the states
        of devices idle past ``stream.state_retention_s`` for deletion from the checkpoint."""
        self._next_evict_ms = now + EVICT_SCAN_MS
        evicted = 0
        for ps in self.partitions.values():
            cutoff = now - self.idle_evict_ms
            idle = [d for d, t in ps.seen.items() if t < cutoff and d not in ps.dirty]
            for d in idle:
                ps.evicted[d] = ps.seen.pop(d)
                ps.devices.pop(d, None)
                ps.trackers.pop(d, None)
            evicted += len(idle)
        if evicted:
            self.metrics.devices_evicted.inc(evicted)
            self.metrics.devices.set(sum(len(p.devices) for p in self.partitions.values()))
        self.count_silent(now)

    def count_silent(self, now: int) -> None:
        """``silent_devices{minutes}``: devices of this worker (in memory or evicted, until
        retired) whose last message is older than each of :data:`SILENT_MINUTES` (one pass
        over the devices, with the eviction scan)."""
        counts = dict.fromkeys(SILENT_MINUTES, 0)
        for ps in self.partitions.values():
            for seen in (ps.seen, ps.evicted):
                for t in seen.values():
                    idle = now - t
                    for m in SILENT_MINUTES:
                        if idle > m * 60_000:
                            counts[m] += 1
        for m, n in counts.items():
            self.metrics.silent_devices.labels(minutes=str(m)).set(n)

    def _retired(self, ps: PartitionState, now: int) -> tuple[str, ...]:
        cutoff = now - self.retention_ms
        old = tuple(d for d, t in ps.evicted.items() if t < cutoff)
        for d in old:
            del ps.evicted[d]
        if old:
            self.metrics.devices_retired.inc(len(old))
        return old

    @property
    def backlogged(self) -> bool:
        """Too many windows wait for inference: stop taking sample messages."""
        return len(self.batcher) >= self.max_pending

    def _new_windower(self, device: str) -> IncrementalWindower:
        sig = self.settings.signal
        return IncrementalWindower(
            max_gap_ms=sig.max_gap_ms,
            lateness_ms=sig.lateness_ms,
            window=sig.window,
            hop=sig.hop,
            device=device,
            phase_ms=window_phase_ms(device, sig.hop, spread=sig.phase_by_device),
        )

    def _count_drops(self, late: int, dups: int, gaps: int) -> None:
        m = self.metrics
        if late:
            m.samples_dropped.labels(reason="late").inc(late)
        if dups:
            m.samples_dropped.labels(reason="duplicate").inc(dups)
        if gaps:
            m.windows_skipped.labels(reason="gap").inc(gaps)

    def flush_metrics(self) -> None:
        """Add the per-message counts gathered by :meth:`handle` to the Prometheus counters
        (once per batch cycle, not per message: a counter increment takes a lock)."""
        if self._n_messages:
            self.metrics.messages_in.inc(self._n_messages)
            self._n_messages = 0
        for sensor, n in self._n_samples.items():
            if n:
                self._samples_in[sensor].inc(n)
                self._n_samples[sensor] = 0

    # ------------------------------------------------------------------ batch cycle

    def checkpoint_due(self, now: int) -> bool:
        progress = any(p.offset > p.checkpointed_offset for p in self.partitions.values())
        if not progress:
            return False
        if self._force_checkpoint or self.rebalancing:
            return True
        return now - self._last_checkpoint_ms >= self.checkpoint_ms

    def seconds_until_work(self, now: int) -> float:
        """How long the batch loop may sleep before something is due."""
        waits = [max(0.0, (self._last_checkpoint_ms + self.checkpoint_ms - now) / 1000.0)]
        if self._force_checkpoint or self.rebalancing:
            waits.append(0.0 if self._force_checkpoint else 0.05)
        b = self.batcher.seconds_until_due(now)
        if b is not None:
            waits.append(b)
        return min(waits)

    def cut(self, force: bool = False) -> Job | None:
        """Take the next batch (between messages, on the loop). None when nothing is due."""
        self.flush_metrics()
        now = self.clock()
        self._tick = now
        if now >= self._next_evict_ms:
            self.evict_idle(now)
        if self.models.current is None:
            return None
        checkpoints: list[Checkpoint] = []
        acks: list[Any] = []
        ack_partitions: list[int] = []
        trackers: dict[str, EpisodeTracker] = {}
        seen: dict[str, int] = {}
        if self.checkpoint_due(now) or (
            force and any(p.offset > p.checkpointed_offset for p in self.partitions.values())
        ):
            t0 = time.perf_counter()
            windows = self.batcher.take()  # all: the snapshot must cover every cut window
            for ps in self.partitions.values():
                if ps.offset <= ps.checkpointed_offset:
                    continue
                # the windower states now; the trackers' states join them once this job's
                # windows are counted (execute)
                states = {d: encode_state(ps.devices[d]) for d in ps.dirty if d in ps.devices}
                for d in states:
                    trackers[d] = ps.trackers[d]
                    seen[d] = ps.seen.get(d, now)
                checkpoints.append(
                    Checkpoint(
                        key=self.checkpoint_key(ps.partition),
                        partition=ps.partition,
                        offset=ps.offset,
                        states=states,
                        retired=self._retired(ps, now),
                    )
                )
                acks.extend(ps.unacked)
                ack_partitions.extend([ps.partition] * len(ps.unacked))
                ps.unacked = []
                ps.dirty = set()
                ps.checkpointed_offset = ps.offset
            self._last_checkpoint_ms = now
            self._force_checkpoint = False
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - t0)
        elif self.batcher.due(now) or (force and len(self.batcher)):
            windows = self.batcher.take(self.batcher.max_size)
        else:
            return None
        if not windows and not checkpoints:
            return None
        guards = [(self.checkpoint_key(p), ps.written_offset) for p, ps in self.partitions.items()]
        for d in {w.device for w in windows} - set(trackers):
            t = self._tracker_of(d)
            if t is not None:
                trackers[d] = t
        return Job(
            windows,
            self.models.current,
            checkpoints,
            acks,
            now,
            guards=guards,
            ack_partitions=ack_partitions,
            trackers=trackers,
            seen=seen,
        )

    def _tracker_of(self, device: str) -> EpisodeTracker | None:
        """The tracker of a device with windows pending (it is dirty: in memory); None when
        its partition was revoked (its new owner counts these windows)."""
        for ps in self.partitions.values():
            t = ps.trackers.get(device)
            if t is not None:
                return t
        return None

    def execute(self, job: Job) -> JobResult:
        """Inference + Kafka + Redis for one job (blocking: runs in the inference thread).
        Kafka first (at least once), then Redis: predictions and checkpoints in one atomic
        script (idempotent). A retry of a job whose predictions reached Kafka only writes
        Redis."""
        inference_s = 0.0
        if job.sent is None:
            if job.classified is None:
                t0 = time.perf_counter()
                job.classified = self._classify(job.windows, job.model)
                inference_s = time.perf_counter() - t0
            preds, feats = job.classified
            if job.steps is None:
                job.steps = self._steps(job.trackers, preds)
            self._send(preds, job.steps)
            job.sent, job.features = preds, feats
        assert job.steps is not None
        outcome = self.sink.write(
            job.sent,
            job.features,
            self._checkpoints(job, job.steps),
            raw=self._raw(job.windows),
            guards=job.guards,
            episodes=_writes(job.steps),
        )
        self._commit(job.trackers, job.steps)
        return JobResult(job.sent, outcome, inference_s, self.clock())

    def _steps(
        self, trackers: dict[str, EpisodeTracker], preds: Sequence[Prediction]
    ) -> dict[str, Step]:
        """Each device's episode step for its predictions in ``preds`` (pure, but for one
        read: a window already in Redis (re-emitted after a crash or rebalance) counts as
        stored, so a replay counts what the first run wrote whatever model classifies it
        now)."""
        by_device: dict[str, list[Window]] = {}
        for p in preds:
            if p.device not in trackers:
                continue
            by_device.setdefault(p.device, []).append(
                Window(p.window_start_ms, p.window_end_ms, p.label, p.confidence)
            )
        unknown = [d for d in by_device if trackers[d].dup_until is None]
        if unknown:
            for d, top in self.sink.history_tops(unknown).items():
                trackers[d].dup_until = top
        ranges = {}
        for d, ws in by_device.items():
            top = trackers[d].dup_until
            assert top is not None
            if ws[0].start_ms <= top:
                ranges[d] = (ws[0].start_ms, min(top, ws[-1].start_ms))
        stored = self.sink.stored_windows(ranges) if ranges else {}
        if stored:
            n = sum(1 for d, ws in by_device.items() for w in ws if w.start_ms in stored.get(d, {}))
            self.metrics.episode_windows_stored.inc(n)
        return {
            d: trackers[d].step([stored.get(d, {}).get(w.start_ms, w) for w in ws])
            for d, ws in by_device.items()
        }

    @staticmethod
    def _checkpoints(job: Job, steps: dict[str, Step]) -> list[Checkpoint]:
        """The job's checkpoints with each device's tracker state after ``steps`` beside
        its windower state (the cut took the windower states only)."""
        out = []
        for c in job.checkpoints:
            states = {}
            for d, w in c.states.items():
                st = steps[d].state if d in steps else job.trackers[d].state
                states[d] = device_state(w, st, job.seen.get(d))
            out.append(Checkpoint(c.key, c.partition, c.offset, states, c.retired))
        return out

    @staticmethod
    def _commit(trackers: dict[str, EpisodeTracker], steps: dict[str, Step]) -> None:
        for d, st in steps.items():
            trackers[d].commit(st)
            if st.state.last_start is not None:
                top = trackers[d].dup_until
                trackers[d].dup_until = max(-1 if top is None else top, st.state.last_start)

    def _raw(self, windows: Sequence[PendingWindow]) -> list[bytes] | None:
        """The raw windows as kept for retraining (``stream.raw_windows``), None when off."""
        if not windows or self.settings.stream.raw_windows == "off":
            return None
        from wearmon.signals.raw import encode_raw_windows

        return encode_raw_windows(np.stack([w.x for w in windows]))

    def _classify(
        self, windows: Sequence[PendingWindow], model: Any
    ) -> tuple[list[Prediction], np.ndarray | None]:
        """One batched inference call: the predictions (and features) of ``windows``."""
        if not windows:
            return [], None
        x = np.stack([w.x for w in windows]).astype(np.float32, copy=False)
        probs = np.asarray(model.predict_proba(x), dtype=np.float32)
        feats: np.ndarray | None = None
        if self.features:
            from wearmon.signals.features import window_features

            feats = window_features(x)
        idx = probs.argmax(axis=1)
        classes = model.classes
        version = str(model.version)
        processed = self.clock()
        span = self.settings.signal.window * GRID_MS
        return [
            Prediction(
                device=w.device,
                window_start_ms=w.start_ms,
                window_end_ms=w.start_ms + span,
                label=str(classes[int(idx[i])]),
                confidence=float(probs[i, idx[i]]),
                probs=[float(v) for v in probs[i]],
                model_version=version,
                processed_ms=processed,
                latency_ms=float(processed - w.sent_ms) if w.sent_ms > 0 else None,
            )
            for i, w in enumerate(windows)
        ], feats

    def _send(self, preds: Sequence[Prediction], steps: dict[str, Step]) -> None:
        """The predictions and the episodes they closed to Kafka, delivered (at least once)."""
        k = self.settings.kafka
        for p in preds:
            self.producer.produce(k.predictions_topic, key=p.device.encode(), value=encode(p))
        for d, st in steps.items():
            for e in st.closed:
                self.producer.produce(k.episodes_topic, key=d.encode(), value=encode(message(d, e)))
        remaining = self.producer.flush(KAFKA_FLUSH_S)
        if remaining:
            raise KafkaFlushTimeout(
                f"{remaining} predictions or episodes not delivered in {KAFKA_FLUSH_S} s"
            )

    def execute_isolated(self, job: Job, reason: str) -> JobResult:
        """A job that failed deterministically: write the windows of each device on its own
        (bisecting the devices), dead-letter the windows of the devices that still fail, then
        the checkpoints (without the states that fail). Transient errors propagate (retry)."""
        by_device: dict[str, list[int]] = {}
        for i, w in enumerate(job.windows):
            by_device.setdefault(w.device, []).append(i)
        written: dict[int, tuple[Prediction, bool, list[tuple[str, bool]]]] = {}
        steps: dict[str, Step] = {}

        def attempt(devices: Sequence[str]) -> None:
            idx = [i for d in devices for i in by_device[d]]
            if job.sent is not None:  # already on Kafka: write Redis only
                preds = [job.sent[i] for i in idx]
                feats = None if job.features is None else job.features[idx]
                assert job.steps is not None
                got = {d: job.steps[d] for d in devices if d in job.steps}
            else:
                preds, feats = self._classify([job.windows[i] for i in idx], job.model)
                got = self._steps(job.trackers, preds)
                self._send(preds, got)
            out = self.sink.write(
                preds,
                feats,
                raw=self._raw([job.windows[i] for i in idx]),
                guards=job.guards,
                episodes=_writes(got),
            )
            steps.update(got)
            for i, p, new in zip(idx, preds, out.new, strict=True):
                written[i] = (p, new, [])
            if out.scored:
                written[idx[0]] = (*written[idx[0]][:2], out.scored)

        bad = bisect_failures(list(by_device), attempt)
        for device, why in bad:
            starts = [job.windows[i].start_ms for i in by_device[device]]
            raw = json.dumps({"device": device, "window_start_ms": starts}).encode()
            self.deadletters.send("windows", raw, device.encode(), why[:500], "batch_failed")
            self.metrics.isolated_windows.inc(len(starts))
            log.error("windows of one device dead-lettered (%s): %d windows", why, len(starts))
        # the devices dead-lettered keep their tracker as it was (their windows count as
        # no data when the next ones arrive)
        job.steps = steps
        checkpoints = self._isolate_checkpoints(self._checkpoints(job, steps))
        self.sink.write([], None, checkpoints, guards=job.guards)
        self._commit(job.trackers, steps)
        keep = sorted(written)
        job.windows = [job.windows[i] for i in keep]
        scored = [s for i in keep for s in written[i][2]]
        outcome = WriteOutcome(new=[written[i][1] for i in keep], scored=scored)
        return JobResult([written[i][0] for i in keep], outcome, 0.0, self.clock())

    def rewind(self, job: Job, partitions: Sequence[int]) -> dict[int, int]:
        """Redis went back in time for ``partitions`` (restarted from an older snapshot):
        forget their state and every pending window, checkpoint and ack of theirs (in
        ``job`` and the batcher), so that they are read again from Redis's checkpoint.
        Returns {partition: the next offset this worker would have read} (for the seek)."""
        gone = {p: self.partitions[p] for p in partitions if p in self.partitions}
        devices = {d for ps in gone.values() for d in (*ps.devices, *ps.evicted)}
        keep = [i for i, w in enumerate(job.windows) if w.device not in devices]
        if job.sent is not None:
            job.sent = [job.sent[i] for i in keep]
            job.features = None if job.features is None else job.features[keep]
        job.windows = [job.windows[i] for i in keep]
        if job.classified is not None:
            preds, feats = job.classified
            job.classified = ([preds[i] for i in keep], None if feats is None else feats[keep])
        if job.steps is not None:
            job.steps = {d: st for d, st in job.steps.items() if d not in devices}
        job.checkpoints = [c for c in job.checkpoints if c.partition not in gone]
        pairs = [(t, p) for t, p in zip(job.acks, job.ack_partitions, strict=True) if p not in gone]
        job.acks, job.ack_partitions = [t for t, _ in pairs], [p for _, p in pairs]
        job.guards = [g for g in job.guards if g[0] not in {self.checkpoint_key(p) for p in gone}]
        pending = self.batcher.take()
        self.batcher.add([w for w in pending if w.device not in devices], self.clock())
        self.drop_partitions(list(gone))
        return {p: ps.offset + 1 for p, ps in gone.items()}

    def _isolate_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        """The checkpoints without device states that fail to be written on their own
        (written to a probe key); the checkpoint as it is when it can be written whole."""
        out = []
        for c in checkpoints:
            probe = f"{c.key}:probe"

            def attempt(devices: Sequence[str], c: Checkpoint = c, probe: str = probe) -> None:
                states = {d: c.states[d] for d in devices}
                self.sink.write([], None, [Checkpoint(probe, c.partition, c.offset, states)])

            try:
                bad = bisect_failures(list(c.states), attempt) if c.states else []
            finally:
                self.sink.delete(probe)
            for _device, why in bad:
                log.error("state of one device not checkpointed (%s)", why)
            drop = {d for d, _ in bad}
            out.append(
                Checkpoint(
                    c.key,
                    c.partition,
                    c.offset,
                    {d: v for d, v in c.states.items() if d not in drop},
                    c.retired,
                )
            )
        return out

    def complete(self, job: Job, result: JobResult) -> list[Any]:
        """Metrics for a finished job; returns the ack tokens it released (on the loop)."""
        m = self.metrics
        if job.windows:
            m.batch_size.observe(len(job.windows))
            m.inference_seconds.observe(result.inference_s)
        done = result.done_ms
        for p, w, new in zip(result.predictions, job.windows, result.outcome.new, strict=True):
            if not new:
                m.duplicates_suppressed.inc()
                continue
            m.predictions.labels(label=p.label, model_version=p.model_version).inc()
            m.confidence.observe(p.confidence)
            m.queue_seconds.observe(max(0.0, (job.cut_ms - w.cut_ms) / 1000.0))
            if w.sent_ms > 0:
                m.e2e_seconds.observe(max(0.0, (done - w.sent_ms) / 1000.0))
                m.ingest_seconds.observe(max(0.0, (w.cut_ms - w.sent_ms) / 1000.0))
        for version, ok in result.outcome.scored:
            m.scored.labels(model_version=version, result="correct" if ok else "wrong").inc()
        if job.checkpoints:
            m.checkpoints.inc(len(job.checkpoints))
        for c in job.checkpoints:
            ps = self.partitions.get(c.partition)
            if ps is not None:
                ps.written_offset = max(ps.written_offset, c.offset)
        return job.acks


def _writes(steps: dict[str, Step]) -> list[EpisodeWrite]:
    return [w for d, st in steps.items() if (w := write_of(d, st)) is not None]


class KafkaFlushTimeout(Exception):
    """Predictions not delivered to Kafka in time (transient: the batch is retried)."""


#: How long a batch waits for its predictions to reach Kafka before it fails (and retries).
KAFKA_FLUSH_S = 10.0


def is_transient(exc: BaseException) -> bool:
    """A failure that a retry may cure (Redis or Kafka unreachable, slow or loading), as
    opposed to one that fails the same way again (a script error, a refused message)."""
    import redis

    e = redis.exceptions
    if isinstance(exc, e.ClusterError | e.TryAgainError | e.RedisClusterException):
        return True  # a Redis Cluster failing over, resharding, a primary or all nodes gone
    if isinstance(exc, e.ResponseError):
        return "BUSY" in str(exc) or "LOADING" in str(exc) or "OOM" in str(exc)
    if isinstance(exc, KafkaFlushTimeout | redis.exceptions.RedisError | OSError):
        return True
    if isinstance(exc, BufferError):
        return True
    from confluent_kafka import KafkaException

    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else None
        return bool(getattr(err, "retriable", lambda: False)())
    return False


def bisect_failures(
    devices: list[str], attempt: Callable[[Sequence[str]], None]
) -> list[tuple[str, str]]:
    """The devices for which ``attempt([device])`` fails with a non-transient error, with
    its message, found by halving: O(k log n) attempts for k failing devices of n. A
    transient error propagates."""
    if not devices:
        return []
    try:
        attempt(devices)
        return []
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, StaleCheckpoint):
            raise
        if len(devices) == 1:
            return [(devices[0], f"{type(exc).__name__}: {exc}")]
    mid = len(devices) // 2
    return bisect_failures(devices[:mid], attempt) + bisect_failures(devices[mid:], attempt)


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff: base_s, 2 base_s, 4 base_s, ... at most max_s (attempt >= 1)."""
    return float(min(max_s, base_s * 2 ** min(attempt - 1, 30)))
