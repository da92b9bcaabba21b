"""Entry point of the ``wearmon`` command.

Logging is configured here, once. A :class:`~wearmon.errors.WearmonError` ends the command
with its one-line message on stderr and exit code 1, never a traceback. Heavy libraries
(TensorFlow, MLflow, Faust) are imported inside the commands that need them, so
``wearmon --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from wearmon.cli import (
    common,
    dashboards,
    data,
    demo,
    model,
    monitor,
    process,
    replay,
    stack,
    train,
)
from wearmon.errors import WearmonError
from wearmon.redact import install_log_redaction, redact

app = typer.Typer(
    name="wearmon",
    help="Streaming, real-time monitoring of wrist-worn motion sensors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(monitor.app, name="monitor")
replay.register(app)
train.register(app)
process.register(app)
demo.register(app)


@app.callback()
def _root(
    ctx: typer.Context,
    log_level: str = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
) -> None:
    settings = common.load_settings()
    level = (log_level or settings.log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()
    ctx.obj = settings


def main() -> None:
    try:
        app()
    except WearmonError as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
