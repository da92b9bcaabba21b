from __future__ import annotations

import numpy as np

from stream_processor.processor import MicroBatcher, PendingWindow


def _w(i: int) -> PendingWindow:
    return PendingWindow("d", i * 2000, np.zeros((200, 6), np.float32), 0, 0)


def test_due_by_size_or_by_wait() -> None:
    b = MicroBatcher(max_size=3, wait_ms=50)
    assert not b.due(0) and b.seconds_until_due(0) is None
    b.add([_w(0)], now_ms=1000)
    assert not b.due(1010)
    assert b.seconds_until_due(1010) == 0.04
    assert b.due(1050)
    b.add([_w(1), _w(2)], now_ms=1020)
    assert b.full and b.due(1020) and b.seconds_until_due(1020) == 0.0


def test_take_is_fifo_and_limited() -> None:
    b = MicroBatcher(max_size=2, wait_ms=10)
    b.add([_w(i) for i in range(5)], now_ms=0)
    assert [w.start_ms for w in b.take(2)] == [0, 2000]
    assert len(b) == 3
    assert [w.start_ms for w in b.take()] == [4000, 6000, 8000]
    assert len(b) == 0 and not b.due(100)
