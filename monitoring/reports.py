"""Evidently snapshot (JSON) and HTML report of a check, bounded on disk.

The report is Evidently's ``DataDriftPreset`` with the check's stat test per feature
(monitoring.drift.FEATURE_METHODS) and each feature's calibrated threshold: a
``DriftedColumnsCount``, the drift table and one ``ValueDrift`` per feature, so its per-feature
flags are the check's own. (Its "dataset drift" headline is Evidently's share rule; the
monitor's decision, the calibrated score, is in ``drift:latest`` and the check's log line.)
Written for every check that changes the policy state; the newest ``keep`` pairs are kept.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.drift import FEATURE_METHODS, DriftResult, LiveBatch, Reference
from wearmon.signals.features import FEATURE_NAMES

log = logging.getLogger(__name__)

#: rows of the reference drawn into a report (the HTML embeds the data's histograms)
REPORT_REF_ROWS = 5_000


def report_dir(settings: Any) -> Path:
    return Path(settings.data_dir) / "monitor" / "reports"


def build_report(ref: Reference, batch: LiveBatch, max_live: int = 2_000) -> Any:
    """Run the Evidently report of a check; returns the snapshot."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    thr = {n: float(v) for n, v in ref.calibration["thresholds"]["features"].items()}
    # Evidently's drift preset with the check's own test and calibrated threshold per
    # feature: the drifted-columns count, the drift table, one ValueDrift per feature
    metrics = [
        DataDriftPreset(
            columns=list(FEATURE_NAMES),
            per_column_method=dict(FEATURE_METHODS),
            per_column_threshold=thr,
        )
    ]
    rx = ref.features
    if len(rx) > REPORT_REF_ROWS:
        rx = rx[np.random.default_rng(0).choice(len(rx), REPORT_REF_ROWS, replace=False)]
    dd = DataDefinition(numerical_columns=list(FEATURE_NAMES))
    cur = Dataset.from_pandas(
        pd.DataFrame(batch.features[-max_live:], columns=FEATURE_NAMES), data_definition=dd
    )
    reference = Dataset.from_pandas(pd.DataFrame(rx, columns=FEATURE_NAMES), data_definition=dd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns in tiny samples
        return Report(metrics).run(cur, reference)


def write_report(
    out_dir: Path, name: str, ref: Reference, batch: LiveBatch, result: DriftResult, keep: int
) -> tuple[Path, Path]:
    """Save ``{name}.json`` (the snapshot) and ``{name}.html``; prune to the newest ``keep``."""
    snapshot = build_report(ref, batch)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, html = out_dir / f"{name}.json", out_dir / f"{name}.html"
    snapshot.save_json(str(js))
    snapshot.save_html(str(html))
    log.info("drift report %s (score %.2f, %d windows)", html, result.score, result.n_windows)
    prune(out_dir, keep)
    return js, html


def prune(out_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` reports (by name: names start with the time)."""
    for suffix in (".json", ".html"):
        files = sorted(out_dir.glob(f"drift-*{suffix}"))
        for old in files[:-keep] if keep > 0 else files:
            old.unlink(missing_ok=True)
