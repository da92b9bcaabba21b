"""``wearmon process`` with its sample messages delivered through Faust's public API, for
``benchmarks/bench_stream.py --public-api``: an agent over ``stream.noack().take_events(...)``
that acks each message itself (``Event.ack`` is ``message.ack(consumer)``, what the worker
calls), instead of the worker's path through Faust internals (stream_processor/faust_adapter:
``deliver_directly`` and ``take_in_fetch``). Everything else is the worker's own: each message
goes to the worker's slow-path handler (flow control, generation check, checkpoint load,
back-pressure, then the processor). The fetch wait stays the worker's (``fetch_max_wait``):
Faust's fixed 1.5 s would measure that setting, not the delivery path.

    python benchmarks/public_api_worker.py process
"""

from __future__ import annotations

from typing import Any

from stream_processor import faust_adapter as fa

#: events per take_events batch, and the longest wait for a batch to fill (seconds)
TAKE_MAX = 1000
TAKE_WITHIN_S = 0.01


def deliver_by_agent(app: Any, topic: Any, handler: Any) -> None:
    """An agent on ``topic`` that hands each event's message to ``handler``."""

    async def samples(stream: Any) -> None:
        async for events in stream.noack().take_events(TAKE_MAX, within=TAKE_WITHIN_S):
            for event in events:
                await handler(event.message)

    app.agent(topic, name="wearmon-samples-public")(samples)


def no_fetch_path(*_: Any, **__: Any) -> None:
    """Nothing taken in the consumer's fetch: every message goes through Faust's loop."""


fa.deliver_directly = deliver_by_agent
fa.take_in_fetch = no_fetch_path

if __name__ == "__main__":
    from wearmon.cli.main import main

    main()
