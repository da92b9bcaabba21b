"""Small test doubles for the stream-processor unit tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_processor.episodes import Window
from stream_processor.sinks import Checkpoint, WriteOutcome


class FakeModel:
    def __init__(
        self, version: str = "1", classes: tuple[str, ...] = ("a", "b"), broken: bool = False
    ) -> None:
        self.version = version
        self.classes = list(classes)
        self.window = 200
        self.broken = broken
        self.calls = 0

    def warmup(self) -> None:
        pass

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        n = x.shape[0]
        if self.broken:
            return np.full((n, len(self.classes)), np.nan, dtype=np.float32)
        p = np.zeros((n, len(self.classes)), dtype=np.float32)
        idx = (x[:, :, 0].mean(axis=1) > 0).astype(int) % len(self.classes)
        p[np.arange(n), idx] = 1.0
        return p


class FakeManager:
    def __init__(self, model: Any) -> None:
        self.current = model


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def produce(
        self, topic: str, key: bytes | None = None, value: bytes = b"", on_delivery: Any = None
    ) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout: float = 0) -> int:
        return 0


class FakeSink:
    """Same semantics as RedisSink: a window is new only if newer than the device's last."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, str, str]] = []
        self.last: dict[str, int] = {}
        self.ckpt: dict[int, tuple[int, dict[str, bytes]]] = {}
        self.stored: dict[str, dict[int, Window]] = {}
        #: device -> (through_ms, closed episodes, open episode, {bucket start: member})
        self.episodes: dict[str, tuple[int, list[Any], Any, dict[int, str], dict[int, str]]] = {}

    def write(
        self,
        preds: Any,
        features: Any = None,
        checkpoints: Any = (),
        raw: Any = None,
        guards: Any = (),
        episodes: Any = (),
    ) -> WriteOutcome:
        new = []
        for p in preds:
            ok = p.window_start_ms > self.last.get(p.device, -1)
            if ok:
                self.last[p.device] = p.window_start_ms
                self.rows.append((p.device, p.window_start_ms, p.label, p.model_version))
                self.stored.setdefault(p.device, {})[p.window_start_ms] = Window(
                    p.window_start_ms, p.window_end_ms, p.label, p.confidence
                )
            new.append(ok)
        for e in episodes:
            through, closed, _, hours, days = self.episodes.get(e.device, (-1, [], None, {}, {}))
            if through > e.through_ms:
                continue
            top = closed[-1].start_ms if closed else -1
            closed = closed + [c for c in e.closed if c.start_ms > top]
            hours = {**hours, **{b.start_ms: b.member() for b in e.hours}}
            days = {**days, **{b.start_ms: b.member() for b in e.days}}
            self.episodes[e.device] = (e.through_ms, closed, e.open, hours, days)
        for c in checkpoints:
            assert isinstance(c, Checkpoint)
            off, states = self.ckpt.get(c.partition, (-1, {}))
            if c.offset > off:
                kept = {d: v for d, v in states.items() if d not in c.retired}
                self.ckpt[c.partition] = (c.offset, {**kept, **c.states})
        return WriteOutcome(new=new, scored=[])

    def load_checkpoint(
        self, app: str, topic: str, partition: int, topic_id: str | None = None
    ) -> tuple[int | None, dict[str, bytes], bool]:
        if partition not in self.ckpt:
            return None, {}, False
        off, states = self.ckpt[partition]
        return off, dict(states), False

    def history_tops(self, devices: Any) -> dict[str, int]:
        return {d: self.last.get(d, -1) for d in devices}

    def stored_windows(self, ranges: dict[str, tuple[int, int]]) -> dict[str, dict[int, Window]]:
        return {
            d: {t: w for t, w in self.stored.get(d, {}).items() if a <= t <= b}
            for d, (a, b) in ranges.items()
        }

    def load_state(self, key: str, device: str) -> bytes | None:
        for _off, states in self.ckpt.values():
            if device in states:
                return states[device]
        return None

    def delete(self, key: str) -> None:
        pass
