"""Helpers shared by the command modules."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from wearmon.errors import ConfigError
from wearmon.settings import Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None


def settings_of(ctx: typer.Context) -> Settings:
    """The settings object built once by the root callback."""
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return load_settings()
