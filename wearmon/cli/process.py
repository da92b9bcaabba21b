"""`wearmon process` (the stream worker) and `wearmon watch` (the live terminal view)."""

from __future__ import annotations

import typer

from wearmon.cli.common import settings_of


def register(app: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root app."""

    @app.command("process")
    def process(
        ctx: typer.Context,
        batch_max: int = typer.Option(None, help="Largest inference batch (stream.batch_max)."),
        batch_wait_ms: int = typer.Option(
            None, help="Longest wait to fill a batch (stream.batch_wait_ms)."
        ),
    ) -> None:
        """Run a stream worker: samples -> 50 Hz windows -> batched inference -> Redis/Kafka.

        Several workers with the same stream.app_id form one consumer group."""
        from stream_processor.app import run_worker

        settings = settings_of(ctx)
        updates = {
            k: v
            for k, v in (("batch_max", batch_max), ("batch_wait_ms", batch_wait_ms))
            if v is not None
        }
        if updates:
            stream = settings.stream.model_copy(update=updates)
            settings = settings.model_copy(update={"stream": stream})
        run_worker(settings)

    @app.command("watch")
    def watch(
        ctx: typer.Context,
        refresh_s: float = typer.Option(1.0, help="Seconds between refreshes."),
        limit: int = typer.Option(30, help="Devices shown (most recent first)."),
        once: bool = typer.Option(False, "--once", help="Print one table and exit."),
    ) -> None:
        """Live view of the latest prediction per device (from Redis) and pipeline rates."""
        from stream_processor.watch import run_watch

        run_watch(settings_of(ctx), refresh_s=refresh_s, limit=limit, once=once)
