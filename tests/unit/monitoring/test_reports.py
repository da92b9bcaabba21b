"""The Evidently report of a check: snapshot JSON + HTML with the check's own per-feature
tests and thresholds, bounded on disk, and an HTML page that headless Chromium renders."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.drift import FEATURE_METHODS, LiveBatch, check
from monitoring.reports import prune, write_report
from tests.unit.monitoring.conftest import LIVE
from wearmon.signals.features import window_features


def _drifted_batch(data: Any) -> LiveBatch:
    x, groups, _ = data
    f = window_features(x[groups == LIVE[0]][:150].astype(np.float64) * 1.5)
    n = len(f)
    return LiveBatch(
        f, np.full(n, "dev-a"), np.full(n, "ROW"), np.full(n, 0.8),
        np.arange(n, dtype=np.int64), np.full(n, "7"),
    )  # fmt: skip


def test_report_holds_the_checks_tests_and_is_bounded(
    data: Any, reference: Any, tmp_path: Path
) -> None:
    ref, cal = reference
    batch = _drifted_batch(data)
    res = check(batch, ref, at_ms=1)
    js, html = write_report(tmp_path, "drift-0001-suspect", ref, batch, res, keep=2)
    snap = json.loads(js.read_text())
    drifts = [m for m in snap["metrics"] if m["config"]["type"].endswith("ValueDrift")]
    assert len(drifts) == len(FEATURE_METHODS)
    for m in drifts:
        col = m["config"]["column"]
        assert m["config"]["method"] == FEATURE_METHODS[col]
        assert m["config"]["threshold"] == pytest.approx(cal["thresholds"]["features"][col])
    by_col = {m["config"]["column"]: m["value"] for m in drifts}
    for col, v in by_col.items():  # the report's statistics are the check's own
        thr = cal["thresholds"]["features"][col]
        assert v == pytest.approx(res.feature_scores[col] * thr, rel=1e-6, abs=1e-9)
    assert html.stat().st_size > 100_000 and "<html" in html.read_text()[:2000].lower()
    for i in (2, 3):
        (tmp_path / f"drift-000{i}-ok.json").write_text("{}")
        (tmp_path / f"drift-000{i}-ok.html").write_text("")
    prune(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("drift-*.html")) == [
        "drift-0002-ok.html", "drift-0003-ok.html",
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_html_report_renders_in_headless_chromium(
    data: Any, reference: Any, tmp_path: Path
) -> None:
    ref, _ = reference
    batch = _drifted_batch(data)
    _, html = write_report(tmp_path, "drift-0001-drift", ref, batch, check(batch, ref, 1), 5)
    png = tmp_path / "report.png"
    cmd = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu",
        "--virtual-time-budget=15000", "--window-size=1400,1200",
        f"--screenshot={png}", html.resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert img.shape == (1200, 1400)
    # a drawn page, not a blank one: many distinct grey levels and dark pixels (text, plots)
    assert len(np.unique(img)) > 50 and (img < 128).mean() > 0.005
