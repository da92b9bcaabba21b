"""Model hot-swap mid-stream: predictions switch version with no window lost, and a broken
model is refused while the old one keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.stream_support import (
    expected_windows,
    generated_recording,
    history,
    make_run,
    messages_of,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.signals.types import Recording

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return generated_recording(tmp_path_factory.mktemp("rec"), subject=2, seed=3, exercises=4)


def test_champion_swaps_mid_stream_and_broken_model_is_refused(
    stack: Settings, redis_client, subprocess_env, recording: Recording, tmp_path: Path
) -> None:
    run = make_run(stack, subprocess_env)
    v1 = register_tiny(run.settings, tmp_path, seed=5)
    devices = [f"swap-{run.run}-{i}" for i in range(2)]
    per = [messages_of(recording, d) for d in devices]
    msgs = [m for group in zip(*per, strict=True) for m in group]
    thirds = [
        msgs[: len(msgs) // 3],
        msgs[len(msgs) // 3 : 2 * len(msgs) // 3],
        msgs[2 * len(msgs) // 3 :],
    ]
    log = tmp_path / "worker.log"
    worker = start_worker(run.env, log)

    def n_preds() -> int:
        return sum(redis_client.xlen(f"pred:hist:{d}") for d in devices)

    try:
        send(run.settings, thirds[0])
        wait_for(lambda: n_preds() > 4, 120, [worker], log, "predictions of v1")
        v2 = register_tiny(run.settings, tmp_path, seed=6)
        redis_client.publish("model:champion", v2)
        wait_for(
            lambda: f"now serving model version {v2}" in log.read_text(),
            60,
            [worker],
            log,
            "swap to v2",
        )
        send(run.settings, thirds[1])
        broken = register_tiny(run.settings, tmp_path, seed=7, window=100)
        redis_client.publish("model:champion", broken)
        wait_for(
            lambda: f"refused model version {broken}" in log.read_text(),
            60,
            [worker],
            log,
            "refusal of the broken model",
        )
        send(run.settings, thirds[2])
        expected = {
            d: {v: expected_windows(recording, run.settings, d, v) for v in (v1, v2)}
            for d in devices
        }
        wait_for(
            lambda: all(
                redis_client.xlen(f"pred:hist:{d}") >= len(expected[d][v1]) for d in devices
            ),
            120,
            [worker],
            log,
            "all predictions",
        )
        time.sleep(2.0)
    finally:
        stop_worker(worker)
    for d in devices:
        rows = history(redis_client, d)
        starts = [int(r["window_start_ms"]) for r in rows]
        assert len(starts) == len(set(starts)), "a window was predicted twice"
        assert set(expected[d][v1]) <= set(starts), "a window was lost across the swap"
        versions = [r["model_version"] for r in rows]
        assert broken not in versions
        assert versions[0] == v1 and versions[-1] == v2, versions
        k = versions.index(v2)
        assert set(versions[:k]) == {v1} and set(versions[k:]) == {v2}, versions
        for r in rows:
            s = int(r["window_start_ms"])
            if s in expected[d][r["model_version"]]:
                assert r["label"] == expected[d][r["model_version"]][s]
