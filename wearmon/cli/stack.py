"""`wearmon stack ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="The local single-machine stack.", no_args_is_help=True)
