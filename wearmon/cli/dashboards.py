"""`wearmon dashboards`: generate the Grafana JSON, render it without Grafana, push it."""

from __future__ import annotations

from pathlib import Path

import typer

from wearmon.cli.common import settings_of
from wearmon.errors import WearmonError

app = typer.Typer(help="Grafana dashboards as code: generate, render, push.", no_args_is_help=True)


@app.command("generate")
def generate_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Folder (default: deploy/grafana/dashboards)."),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if a file differs from the code."
    ),
) -> None:
    """Write every dashboard's JSON (deploy/grafana/dashboards/<name>.json)."""
    from monitoring.dashboards.generate import dashboards_dir, stale, write_all

    folder = out or dashboards_dir(settings_of(ctx))
    if check:
        names = stale(folder)
        if names:
            raise WearmonError(
                f"dashboards out of date in {folder}: {', '.join(names)} "
                "(run `wearmon dashboards generate`)"
            )
        typer.echo(f"dashboards in {folder} are up to date")
        return
    for path in write_all(folder):
        typer.echo(f"wrote {path}")


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Folder (default: <data_dir>/dashboards)."),
    minutes: float = typer.Option(30.0, "--minutes", help="Time range: the last N minutes."),
    participant: str = typer.Option(
        None, "--participant", help="Device id for the participant dashboard (default: newest)."
    ),
) -> None:
    """Draw every dashboard's panels from the live Prometheus and Redis into PNGs."""
    from monitoring.dashboards.live import Window
    from monitoring.dashboards.render import render_all

    settings = settings_of(ctx)
    folder = out or settings.data_dir / "dashboards"
    step = max(5, round(minutes * 60 / 240))
    report = render_all(
        settings, folder, window=Window.last(minutes * 60, step_s=step), participant=participant
    )
    for name, views in report.items():
        empty = [v.title for v in views if not v.has_data]
        note = f"; no data: {', '.join(empty)}" if empty else ""
        typer.echo(f"{folder / (name + '.png')}: {len(views)} panels{note}")


@app.command("push")
def push_cmd(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Dashboards (default: all)."),
) -> None:
    """Upload the dashboards to the Grafana of grafana.url (token: grafana.token)."""
    from monitoring.dashboards.push import push

    for url in push(settings_of(ctx), names or None):
        typer.echo(f"pushed {url}")
