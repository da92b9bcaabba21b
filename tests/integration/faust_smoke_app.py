"""A minimal Faust app used by the smoke test: a changelogged table plus a Redis write.

Configured entirely by environment variables so that the test can run it as a real worker
subprocess (``python -m faust -A tests.integration.faust_smoke_app worker``).
"""

from __future__ import annotations

import os

import faust
import redis

app = faust.App(
    os.environ.get("SMOKE_APP_ID", "wearmon-smoke"),
    broker=os.environ.get("SMOKE_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    datadir=os.environ.get("SMOKE_DATADIR", "wearmon-smoke-data"),
    topic_partitions=int(os.environ.get("SMOKE_PARTITIONS", "2")),
    topic_replication_factor=1,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(
    os.environ.get("SMOKE_TOPIC", "smoke.in"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
counts = app.Table("smoke-counts", default=int, key_type=str, value_type=int)
_redis = redis.Redis.from_url(os.environ.get("SMOKE_REDIS", "redis://127.0.0.1:6379/0"))


@app.agent(source)
async def consume(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        device = event.key.decode()
        msg_id = event.value.decode()
        counts[device] += 1
        pipe = _redis.pipeline(transaction=False)
        pipe.hincrby("smoke:seen", msg_id, 1)
        pipe.hset("smoke:count", device, counts[device])
        pipe.execute()
