"""Helpers shared by the command modules."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

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


T = TypeVar("T")


def interruptible(fn: Callable[[], T]) -> tuple[T | None, bool]:
    """``(fn(), False)``, or ``(None, True)`` when SIGINT or SIGTERM stopped it. Both
    signals raise KeyboardInterrupt, so ``finally`` blocks stop what ``fn`` started (a
    ``kill`` leaves nothing running either); an exception raised while one was pending
    counts as the interruption (a signal inside C code, e.g. matplotlib's renderer, comes
    out as its own error, such as "Invalid bounding box"). Only the first signal
    interrupts: more of them while the clean-up runs are noted and let it finish."""
    got: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        got.append(signum)
        if len(got) == 1:  # a second Ctrl-C does not cut the clean-up short
            raise KeyboardInterrupt

    before = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return fn(), False
    except KeyboardInterrupt:
        return None, True
    except Exception:
        if not got:
            raise
        return None, True
    finally:
        for s, h in before.items():
            signal.signal(s, h)
