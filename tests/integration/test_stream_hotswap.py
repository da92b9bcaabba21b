"""Model hot-swap mid-stream: predictions switch version with no window lost, and a broken
model is refused while the old one keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.stream_support import (
    all_predicted,
    checkpointed,
    expected_by_device,
    generated_recording,
    history,
    interleaved,
    make_run,
    n_predicted,
    register_tiny,
    running_worker,
    send,
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
    v1 = register_tiny(run.settings, tmp_path, seed=1)
    devices = [f"swap-{run.run}-{i}" for i in range(2)]
    msgs = interleaved(recording, devices)
    thirds = [
        msgs[: len(msgs) // 3],
        msgs[len(msgs) // 3 : 2 * len(msgs) // 3],
        msgs[2 * len(msgs) // 3 :],
    ]
    log = tmp_path / "worker.log"
    with running_worker(run.env, log) as worker:
        send(run.settings, thirds[0])
        wait_for(lambda: n_predicted(redis_client, devices) > 4, 120, [worker], log,
                 "predictions of v1")  # fmt: skip
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
        by_version = {v: expected_by_device(recording, run.settings, devices, v) for v in (v1, v2)}
        expected = {d: {v: by_version[v][d] for v in (v1, v2)} for d in devices}
        wait_for(lambda: all_predicted(redis_client, by_version[v1]), 120, [worker], log,
                 "all predictions")  # fmt: skip
        wait_for(lambda: checkpointed(redis_client, run), 60, [worker], log, "the checkpoints")
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
