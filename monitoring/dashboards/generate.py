"""Generate the dashboards' JSON: ``wearmon dashboards generate`` writes
``deploy/grafana/dashboards/<name>.json`` (committed; a test checks they are up to date)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from wearmon.errors import WearmonError


def builders() -> dict[str, Callable[[], Any]]:
    """{file name: build function} of every dashboard."""
    from monitoring.dashboards import drift, participant, pipeline, predictions

    return {
        "pipeline": pipeline.build,
        "predictions": predictions.build,
        "drift": drift.build,
        "participant": participant.build,
    }


def dashboard_json(name: str) -> dict[str, Any]:
    """One dashboard as the plain JSON object Grafana stores."""
    build = builders().get(name)
    if build is None:
        raise WearmonError(f"no dashboard named {name!r}: one of {', '.join(builders())}")
    text = json.dumps(build().build(), cls=JSONEncoder)
    return dict(json.loads(text))


def render_text(name: str) -> str:
    """The file content of one dashboard (stable: sorted keys, two-space indent)."""
    return json.dumps(dashboard_json(name), indent=2, sort_keys=True) + "\n"


def dashboards_dir(settings: Any) -> Path:
    return Path(settings.deploy_dir) / "grafana" / "dashboards"


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard to ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in builders():
        path = out_dir / f"{name}.json"
        path.write_text(render_text(name))
        paths.append(path)
    return paths


def stale(out_dir: Path) -> list[str]:
    """Names of the dashboards whose file in ``out_dir`` differs from the code (or is missing)."""
    out = []
    for name in builders():
        path = out_dir / f"{name}.json"
        if not path.is_file() or path.read_text() != render_text(name):
            out.append(name)
    return out


def load_all(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The committed dashboards, {name: JSON}."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))}
