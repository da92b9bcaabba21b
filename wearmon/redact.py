"""Credentials out of everything wearmon prints: URLs, log lines and error messages.

:func:`redact` is the one helper: it masks the password of every ``scheme://user:password@``
URL in a text and the value of secret-looking query parameters (``?password=...``).
:func:`install_log_redaction` applies it to every log record the process creates (the CLI
entry point calls it once); the CLI applies it to every error line it prints.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

#: ``scheme://user:password@``: the password is everything up to the next ``@``.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*:)[^@\s]+@")
#: ``?password=...`` / ``&token=...`` in a URL's query.
_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|secret|token|access_token|api_key)=)[^&;#\s]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    >>> redact("cannot reach redis://app:s3cret@db:6379/0")
    'cannot reach redis://app:***@db:6379/0'
    """
    if "://" not in text and "=" not in text:
        return text
    out = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", out)


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created (idempotent).

    A record factory rather than a handler filter: frameworks that replace the logging
    handlers later (Faust's worker does) keep it. The message and any formatted traceback
    are redacted; records below the logger's level are never built, so they cost nothing.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: logging reports it itself
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:  # else the handler's formatter formats it as usual
            record.exc_text = clean
