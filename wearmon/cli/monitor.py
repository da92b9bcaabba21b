"""`wearmon monitor ...`: the drift monitor service, its status, one check (monitoring/)."""

from __future__ import annotations

import typer

from wearmon.cli.common import interruptible, settings_of

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

    A check every monitor.interval_s; the policy lives in Redis: a restart resumes it.

    It lowers its CPU priority by monitor.nice (+5): the stream workers come first."""
    _run(ctx)


def _run(ctx: typer.Context) -> None:
    from monitoring.service import serve
    from wearmon.processes import lower_priority

    settings = settings_of(ctx)
    lower_priority(settings.monitor.nice)
    _, stopped = interruptible(lambda: serve(settings))  # Ctrl-C, or SIGTERM (systemd, compose)
    if stopped:
        typer.echo("monitor stopped", err=True)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    n: int = typer.Option(5, "-n", help="How many checks and decisions to show."),
) -> None:
    """The policy state, the last checks and the last decisions, in words."""
    from monitoring.service import status
    from wearmon.settings import redis_errors

    settings = settings_of(ctx)
    client = None
    try:
        client = settings.redis.connect()
        for line in status(settings, client, n):
            typer.echo(line)
    except redis_errors() as exc:
        from wearmon.errors import MonitorError

        raise MonitorError(f"Redis unreachable: {exc}") from None
    finally:
        if client is not None:
            client.close()


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    once: bool = typer.Option(True, "--once", help="One check, then exit (for scripts)."),
) -> None:
    """One check of the new live windows, fed to the policy, printed in words.

    Exit 0 whatever the verdict (the line says it; drift:latest holds it)."""
    from monitoring.service import check_once, describe
    from wearmon.errors import MonitorError
    from wearmon.settings import redis_errors

    try:
        out = check_once(settings_of(ctx))
    except redis_errors() as exc:
        raise MonitorError(f"Redis unreachable: {exc}") from None
    typer.echo(describe(out))
    if out.report is not None:
        typer.echo(f"report: {out.report}")


@app.command("backtest")
def backtest_cmd(
    ctx: typer.Context,
    scenarios: str = typer.Option(
        "all", "--scenarios", help="Comma-separated scenario names, or all (docs/drift.md)."
    ),
    out: str = typer.Option("", "--out", help="Folder for backtest.md, results.json, PNGs."),
    devices: int = typer.Option(12, "--devices", min=1, help="Virtual watches per scenario."),
    speed: float = typer.Option(5.0, "--speed", help="Replay speed (x real time)."),
    check_every: float = typer.Option(20.0, "--check-every", help="Device-seconds per check."),
    champion: str = typer.Option(
        "",
        "--champion",
        help="Base champion version in the backtest's own registry (default: the one an "
        "earlier run in --out trained, else train one on seglearn subjects 1-7).",
    ),
    epochs: int = typer.Option(8, "--epochs", help="Epochs of the base champion."),
    cooldown: float = typer.Option(900.0, "--cooldown", help="Policy cooldown (device-s)."),
    min_labelled: int = typer.Option(
        600, "--min-labelled", help="Labelled windows since the onset DRIFT waits for."
    ),
    label_wait: float = typer.Option(
        300.0, "--label-wait", help="... for at most this many device-seconds."
    ),
) -> None:
    """Replay drift scenarios through the real pipeline (its own stack on free ports, a
    worker, the monitor driven check by check) and measure detection delay, false alarms,
    retrainings, the gate and live accuracy; writes a Markdown table and timeline PNGs."""
    from pathlib import Path

    from monitoring.backtest import SCENARIOS
    from monitoring.backtest_pipeline import BacktestConfig, isolated_settings, run_backtest

    settings = settings_of(ctx)
    names = tuple(SCENARIOS) if scenarios == "all" else tuple(
        s.strip() for s in scenarios.split(",") if s.strip()
    )  # fmt: skip
    folder = Path(out) if out else settings.data_dir / "backtest"
    cfg = BacktestConfig(
        out_dir=folder.resolve(),
        scenarios=names,
        devices=devices,
        speed=speed,
        check_every_s=check_every,
        epochs=epochs,
        champion=champion or None,
        cooldown_s=cooldown,
        min_labelled=min_labelled,
        label_wait_s=label_wait,
    )
    run_backtest(isolated_settings(cfg.out_dir, settings), cfg)
    typer.echo((cfg.out_dir / "backtest.md").read_text())
    typer.echo(f"results and timelines in {cfg.out_dir}")
