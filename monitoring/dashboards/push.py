"""Upload the dashboards to a Grafana, and post annotations, with ``grafana-client`` (the
maintained fork of the unmaintained ``grafana-api``).

Requests (Grafana's HTTP API): ``GET /api/folders/{uid}`` and, when it is missing,
``POST /api/folders``; then per dashboard ``POST /api/dashboards/db`` with
``{"dashboard": ..., "folderUid": ..., "overwrite": true}``. Annotations:
``POST /api/annotations`` with ``{"time", "tags", "text"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from wearmon.errors import ConfigError, GrafanaError

log = logging.getLogger(__name__)


def client(settings: Any) -> Any:
    """A GrafanaApi for ``settings.grafana``; ConfigError when no URL is configured."""
    from grafana_client import GrafanaApi

    g = settings.grafana
    if not g.url:
        raise ConfigError("no Grafana configured: set WEARMON_GRAFANA__URL (and __TOKEN)")
    token = g.token.get_secret_value() if g.token is not None else None
    return GrafanaApi.from_url(g.url, credential=token, timeout=g.timeout_s)


def _call(what: str, fn: Any, *args: Any) -> Any:
    from grafana_client.client import GrafanaException

    try:
        return fn(*args)
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana refused {what}: {exc.message}") from None
    except OSError as exc:  # connection refused, DNS, timeout
        raise GrafanaError(f"Grafana unreachable for {what}: {exc}") from None


def ensure_folder(api: Any, uid: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(uid)
        return
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise GrafanaError(f"Grafana refused folder {uid!r}: {exc.message}") from None
    except OSError as exc:
        raise GrafanaError(f"Grafana unreachable: {exc}") from None
    _call(f"creating folder {uid!r}", api.folder.create_folder, uid, uid)


def push(settings: Any, names: Sequence[str] | None = None) -> list[str]:
    """Upload the generated dashboards (all, or ``names``); returns their URLs in Grafana."""
    from monitoring.dashboards.generate import builders, dashboard_json

    api = client(settings)
    folder = settings.grafana.folder
    ensure_folder(api, folder)
    urls = []
    for name in names or list(builders()):
        body = {
            "dashboard": {**dashboard_json(name), "id": None},
            "folderUid": folder,
            "overwrite": True,
            "message": "wearmon dashboards push",
        }
        out = _call(f"dashboard {name!r}", api.dashboard.update_dashboard, body)
        urls.append(str(out.get("url", name)) if isinstance(out, dict) else name)
        log.info("pushed dashboard %s", name)
    return urls


def annotate(settings: Any, text: str, tags: Sequence[str], time_ms: int | None = None) -> None:
    """Post one annotation (retraining started/finished, promotion) to Grafana."""
    api = client(settings)
    add = api.annotations.add_annotation
    _call("annotation", lambda: add(time_from=time_ms, tags=list(tags), text=text))
