"""Activity episodes exactly once, like the predictions: the batch script's episode writes
against the real Redis (absolute, only forward, TTL, trimmed), and a real worker killed with
``kill -9`` mid-replay and restarted writes the episodes and minute totals of the
predictions it stored, with every closed episode on the episodes topic."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from stream_processor.episodes import (
    DAY_MS,
    HOUR_MS,
    Bucket,
    Episode,
    EpisodeWrite,
    buckets,
    daily_key,
    decode_message,
    episodes,
    episodes_key,
    hourly_key,
    minute_totals,
    open_episode_key,
    windows_of_history,
)
from stream_processor.sinks import RedisSink, history_key
from tests.integration.stream_support import (
    generated_recording,
    make_run,
    messages_of,
    register_tiny,
    send,
    start_worker,
    stop_worker,
    wait_for,
)
from wearmon.settings import Settings
from wearmon.stack import free_port

pytestmark = pytest.mark.integration

N_DEVICES = 4
TTL_S = 3600


def _sink(client: Any) -> RedisSink:
    return RedisSink(client, history_maxlen=100, ttl_s=TTL_S, features_maxlen=100)


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_episode_writes_are_absolute_only_forward_and_expire(redis_client: Any) -> None:
    sink = _sink(redis_client)
    d = f"ep-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    hour = now - now % HOUR_MS
    old = hour - 2 * 24 * HOUR_MS  # beyond the 1 h TTL: trimmed
    e1 = Episode(hour, hour + 6000, "sit", 0.5, 2)
    e2 = Episode(hour + 4000, hour + 8000, "walk", 0.9, 1)
    hours = [Bucket(old, {"sit": 1}), Bucket(hour, {"sit": 4000})]
    first = EpisodeWrite(d, hour + 4000, [e1], e2, hours, [], new_hour=True)
    sink.write([], episodes=[first])
    sink.write([], episodes=[first])  # a replay of the same batch: nothing doubles
    assert redis_client.xlen(episodes_key(d)) == 1
    assert _decode(redis_client.hgetall(open_episode_key(d))) == {
        **e2.fields(),
        "through_ms": str(hour + 4000),
    }
    members = redis_client.zrange(hourly_key(d), 0, -1, withscores=True)
    assert [(json.loads(m), s) for m, s in members] == [
        ({"t": hour, "sit": round(4000 / 60_000, 3)}, hour)
    ], "one member per bucket, replaced; the bucket older than the TTL trimmed"
    # a writer behind (a zombie after a rebalance) writes nothing
    stale = EpisodeWrite(d, hour, [], Episode(hour, hour + 4000, "tap", 1.0, 1), [], [])
    sink.write([], episodes=[stale])
    assert redis_client.hget(open_episode_key(d), "activity") == b"walk"
    # a later batch: the bucket's total replaced, the closed episode added once
    later = Bucket(hour, {"sit": 4000, "walk": 4000})
    sink.write([], episodes=[EpisodeWrite(d, hour + 6000, [e1, e2], None, [later], [later])])
    assert redis_client.xlen(episodes_key(d)) == 2
    assert _decode(redis_client.hgetall(open_episode_key(d))) == {"through_ms": str(hour + 6000)}
    assert redis_client.zrange(hourly_key(d), 0, -1) == [later.member().encode()]
    for key in (episodes_key(d), open_episode_key(d), hourly_key(d), daily_key(d)):
        assert 0 < redis_client.ttl(key) <= TTL_S, key


def _episodes_topic(settings: Settings, topic: str, timeout_s: float = 20.0) -> list[Any]:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out, idle_until = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < idle_until:
            m = c.poll(1.0)
            if m is None or m.error():
                if out:
                    idle_until = min(idle_until, time.monotonic() + 3)
                continue
            out.append(decode_message(m.value()))
    finally:
        c.close()
    return out


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def test_kill_9_and_restart_writes_the_episodes_of_the_predictions(
    stack: Settings, redis_client: Any, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    topic = f"t.episodes.{uuid.uuid4().hex[:8]}"
    # no periodic checkpoint before the kill: the restarted worker re-reads every sample from
    # the start, so the windows stored before the kill are certain to come again (with the
    # suite's 0.5 s checkpoints, a kill just after a checkpoint left none to re-emit)
    run = make_run(
        stack,
        subprocess_env,
        WEARMON_KAFKA__EPISODES_TOPIC=topic,
        WEARMON_STREAM__CHECKPOINT_S="600",
    )
    register_tiny(run.settings, tmp_path, seed=3)
    rec = generated_recording(tmp_path / "rec", subject=5, seed=2, exercises=3)
    devices = [f"ep-{run.run}-{i}" for i in range(N_DEVICES)]
    per = [messages_of(rec, d) for d in devices]
    msgs = [m for group in zip(*per, strict=True) for m in group]
    log = tmp_path / "worker.log"
    port = free_port()
    worker = start_worker(run.env, log, port)
    head = len(msgs) // 6
    sender = threading.Thread(target=send, args=(run.settings, msgs[head:]), kwargs={"pace_s": 0.1})
    counted = lambda: sum(redis_client.xlen(history_key(d)) for d in devices)  # noqa: E731
    try:
        send(run.settings, msgs[:head])
        wait_for(lambda: counted() > N_DEVICES * 3, 120, [worker], log, "first predictions")
        sender.start()
        time.sleep(2.5)
        stop_worker(worker, hard=True)  # kill -9 mid-replay
        before = counted()
        worker = start_worker(run.env, log, port)
        sender.join(120)

        def settled() -> bool:  # the newest window of each device counted in its episodes
            for d in devices:
                top = redis_client.xrevrange(history_key(d), count=1)
                through = redis_client.hget(open_episode_key(d), "through_ms")
                if not top or through is None or int(top[0][0].split(b"-")[0]) != int(through):
                    return False
            return True

        wait_for(lambda: counted() > before and settled(), 120, [worker], log, "all episodes")
        time.sleep(3.0)  # the last windows of the replay (cut at its end)
        wait_for(settled, 60, [worker], log, "the last episodes")
        stored = _metric(port, "wearmon_stream_episode_windows_stored_total")
    finally:
        stop_worker(worker)
        sender.join(5)
    hop_ms = run.settings.signal.hop * 20
    on_kafka = {(m.device, m.start_ms): m for m in _episodes_topic(run.settings, topic)}
    n_episodes = 0
    for d in devices:
        wins = windows_of_history(redis_client.xrange(history_key(d)))
        expected = episodes(wins, max_gap_ms=run.settings.signal.max_gap_ms)
        closed = [
            _decode(f) for _, f in redis_client.xrange(episodes_key(d))
        ]  # every closed episode once (its entry id is its start)
        open_ = _decode(redis_client.hgetall(open_episode_key(d)))
        open_.pop("through_ms")
        assert [*closed, open_] == [e.fields() for e in expected], d
        for key, size in ((hourly_key(d), HOUR_MS), (daily_key(d), DAY_MS)):
            got = {int(s): m.decode() for m, s in redis_client.zrange(key, 0, -1, withscores=True)}
            want = buckets(minute_totals(wins, hop_ms=hop_ms, bucket_ms=size))
            assert got == {t: b.member() for t, b in want.items()}, key
        for e in expected[:-1]:
            m = on_kafka.get((d, e.start_ms))
            assert m is not None, f"{d}: episode at {e.start_ms} not on {topic}"
            assert (m.end_ms, m.activity, m.windows) == (e.end_ms, e.activity, e.windows)
        n_episodes += len(expected)
    assert n_episodes > N_DEVICES, "the model changes its mind: more than one episode a device"
    assert stored > 0, "the restarted worker counted no re-emitted window as already stored"
