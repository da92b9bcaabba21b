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
