"""`wearmon monitor ...`: the drift monitor service, its status, one check (monitoring/)."""

from __future__ import annotations

import typer

from wearmon.cli.common import settings_of

app = typer.Typer(
    help="The drift monitor: checks live windows against the champion's reference profile, "
    "runs the trigger policy and starts retrainings (docs/drift.md).",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def _monitor(ctx: typer.Context) -> None:
    """Without a subcommand: run the monitor service (same as `wearmon monitor run`)."""
    if ctx.invoked_subcommand is None:
        _run(ctx)


@app.command("run")
def run_cmd(ctx: typer.Context) -> None:
    """Run the monitor service (checks, policy, metrics on metrics.monitor_port).

    A check every monitor.interval_s; the policy state lives in Redis, so a restart resumes
    it."""
    _run(ctx)


def _run(ctx: typer.Context) -> None:
    from monitoring.service import serve

    try:
        serve(settings_of(ctx))
    except KeyboardInterrupt:
        typer.echo("monitor stopped", err=True)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    n: int = typer.Option(5, "-n", help="How many checks and decisions to show."),
) -> None:
    """The policy state, the last checks and the last decisions, in words."""
    import redis

    from monitoring.service import status

    settings = settings_of(ctx)
    client = redis.Redis.from_url(settings.redis.url, **settings.redis.client_kwargs())
    try:
        for line in status(settings, client, n):
            typer.echo(line)
    except redis.RedisError as exc:
        from wearmon.errors import MonitorError

        raise MonitorError(f"Redis unreachable: {exc}") from None
    finally:
        client.close()


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    once: bool = typer.Option(True, "--once", help="One check, then exit (for scripts)."),
) -> None:
    """One check of the new live windows, fed to the policy, printed in words.

    Exit 0 whatever the verdict (the line says it; drift:latest holds it)."""
    import redis

    from monitoring.service import check_once, describe
    from wearmon.errors import MonitorError

    try:
        out = check_once(settings_of(ctx))
    except redis.RedisError as exc:
        raise MonitorError(f"Redis unreachable: {exc}") from None
    typer.echo(describe(out))
    if out.report is not None:
        typer.echo(f"report: {out.report}")
