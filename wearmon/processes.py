"""Child processes of wearmon that must see the same settings (workers, the monitor, a
retraining started by it): one place that turns a Settings object into their environment,
and the start/stop of a ``wearmon`` command as a subprocess.

A child reads its settings again from ``WEARMON_*`` variables (wearmon.settings), so
:func:`child_env` writes every field of the parent's Settings (nested settings as JSON,
secrets as their values: the environment of a child is not a log) and drops any other
``WEARMON_*`` variable of the parent, which could otherwise override them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from wearmon.settings import Settings

PREFIX = "WEARMON_"


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that must build the same ``Settings``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.startswith(PREFIX)}
    for name in type(settings).model_fields:
        value = _plain(getattr(settings, name))
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[PREFIX + name.upper()] = text
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def wearmon_command(*args: str) -> list[str]:
    """``wearmon ARGS`` run by this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "wearmon.cli.main", *args]


def start(
    settings: Settings,
    args: Sequence[str],
    log_path: Path,
    *,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """Start ``wearmon ARGS`` in its own process group, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            wearmon_command(*args),
            env=child_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    if nice:
        lower_priority(nice, proc.pid)
    return proc


def lower_priority(increment: int, pid: int = 0) -> None:
    """Set process ``pid`` (0: this one) to this process's CPU priority plus ``increment``,
    nice 19 at most; 0 leaves it unchanged."""
    if increment > 0:
        os.setpriority(
            os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGINT the process group, SIGKILL it after ``timeout_s``; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return int(proc.returncode)
