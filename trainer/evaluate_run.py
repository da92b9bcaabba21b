"""`wearmon evaluate`: evaluate a registered version on labelled windows, tracked in MLflow."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from trainer.datasets import load_dataset
from wearmon.errors import ConfigError
from wearmon.settings import Settings


def evaluate_version(
    settings: Settings,
    ref: str = "champion",
    *,
    data: str | None = None,
    subjects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of a version on ``data`` (default: its training source) for ``subjects``
    (default: its held-out test subjects, else all), at the stream hop. Reports are written
    to ``data_dir/reports/v<version>-<time>/`` and logged to the MLflow experiment
    ``wearmon-evaluate``."""
    import mlflow

    from trainer import registry
    from trainer.evaluate import compute_metrics, scalar_metrics, write_report
    from trainer.serving import load_version

    version = registry.resolve(settings, ref)
    sm = load_version(settings, version)
    meta = sm.metadata
    own = str((meta.get("data") or {}).get("source", ""))
    source = data or (own if own and not own.startswith("imported:") else "seglearn")
    ds = load_dataset(source, settings.signal, classes=sm.classes)
    if subjects is None:
        split = meta.get("split") or {}
        held = list(split.get("test") or split.get("val") or []) if source == own else []
        subjects = held or ds.subjects
    ds = ds.of_subjects(subjects)
    if len(ds) == 0:
        raise ConfigError(f"no labelled windows of subjects {list(subjects)} in {source}")
    m = compute_metrics(ds.y, sm.predict_proba(ds.x), sm.classes)
    out = settings.data_dir / "reports" / f"v{version}-{time.strftime('%Y%m%d-%H%M%S')}"
    write_report(m, out, title=f"{settings.model_name} v{version} on {source}")
    exp = registry.experiment_id(settings, "wearmon-evaluate")
    with mlflow.start_run(experiment_id=exp, run_name=f"evaluate v{version}"):
        mlflow.set_tags({"model_version": version, "model_name": settings.model_name})
        mlflow.log_params({"data": source, "subjects": ",".join(subjects), "n": m["n"]})
        mlflow.log_metrics(scalar_metrics(m))
        mlflow.log_artifacts(str(out), artifact_path="evaluation")
    return {
        "version": version,
        "data": source,
        "subjects": list(subjects),
        "metrics": m,
        "report_dir": out,
    }
