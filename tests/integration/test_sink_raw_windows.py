"""The Redis sink keeps the raw windows the retraining pool reads, and records each scored
window's verdict (1 right, 0 wrong) where the backtest reads it, against the real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from stream_processor.sinks import RedisSink, labels_key, raw_windows_key, scored_key
from wearmon.schemas import Prediction
from wearmon.signals.raw import decode_raw_window, encode_raw_windows

pytestmark = pytest.mark.integration


T0 = 1_764_000_000_000  # window starts are epoch ms (a stream id cannot be 0-0)


def _pred(device: str, start: int, label: str) -> Prediction:
    start += T0
    return Prediction(
        device=device,
        window_start_ms=start,
        window_end_ms=start + 4000,
        label=label,
        confidence=0.9,
        probs=[0.9, 0.1],
        model_version="7",
        processed_ms=start + 5000,
    )


def _sink(client: Any, mode: str) -> RedisSink:
    return RedisSink(
        client, history_maxlen=100, ttl_s=3600, features_maxlen=100, raw_windows=mode,
        raw_maxlen=50,
    )  # fmt: skip


def _windows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, size=(n, 200, 6)).astype(np.float32)


def test_labelled_mode_keeps_raw_windows_only_of_devices_with_ground_truth(
    redis_client: Any,
) -> None:
    sink = _sink(redis_client, "labelled")
    seen, unseen = f"d-{uuid.uuid4().hex[:8]}", f"d-{uuid.uuid4().hex[:8]}"
    sink.write_label(seen, T0, T0 + 60_000, "REST", 4000)
    x = _windows(4, 0)
    preds = [_pred(seen, 0, "REST"), _pred(seen, 2000, "TAP"), _pred(unseen, 0, "REST"),
             _pred(unseen, 2000, "REST")]  # fmt: skip
    sink.write(preds, None, raw=encode_raw_windows(x))
    entries = redis_client.xrange(raw_windows_key(seen))
    assert [e[0] for e in entries] == [f"{T0}-0".encode(), f"{T0 + 2000}-0".encode()]
    np.testing.assert_allclose(decode_raw_window(entries[1][1][b"x"], 200), x[1], atol=0.01)
    assert 0 < redis_client.ttl(raw_windows_key(seen)) <= 3600
    assert not redis_client.exists(raw_windows_key(unseen))
    # the verdicts of the two scored windows: the REST one right, the TAP one wrong
    assert redis_client.hgetall(scored_key(seen)) == {
        str(T0).encode(): b"1",
        str(T0 + 2000).encode(): b"0",
    }
    assert redis_client.exists(labels_key(seen))


def test_all_and_off_modes(redis_client: Any) -> None:
    a, b = f"d-{uuid.uuid4().hex[:8]}", f"d-{uuid.uuid4().hex[:8]}"
    _sink(redis_client, "all").write(
        [_pred(a, 0, "REST")], None, raw=encode_raw_windows(_windows(1, 1))
    )
    _sink(redis_client, "off").write(
        [_pred(b, 0, "REST")], None, raw=encode_raw_windows(_windows(1, 2))
    )
    assert redis_client.xlen(raw_windows_key(a)) == 1
    assert not redis_client.exists(raw_windows_key(b))


def test_raw_windows_are_bounded_per_device(redis_client: Any) -> None:
    sink = _sink(redis_client, "all")
    d = f"d-{uuid.uuid4().hex[:8]}"
    x = _windows(1, 3)
    for k in range(300):
        sink.write([_pred(d, 2000 * k, "REST")], None, raw=encode_raw_windows(x))
    # MAXLEN ~ 50: Redis trims whole macro nodes, so a little above 50, never all 300
    assert 50 <= redis_client.xlen(raw_windows_key(d)) < 300
