"""Thresholds of the drift check, calibrated on normal between-person variation.

Leave one subject out: each training subject in turn is treated as a new, live person,
checked in chunks of consecutive windows against the windows of the other subjects, with the
same statistics as a live check (monitoring.drift). A threshold is the largest value any
held-out normal subject reached, times a margin, so that by construction no held-out normal
subject alarms. The false-alarm rate is measured the honest way as well: each subject is
checked against thresholds set on the others only (``held_out``).

:func:`calibrate` is pure and JSON-serialisable (the trainer saves it as
:data:`CALIBRATION_FILE` beside the reference profile). :func:`calibration_for` is the IO side:
the version's stored calibration, else one cached under the data dir, else one computed once
from the version's profile (with a ``subject`` column) or from the base data set.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.drift import (
    FEATURE_METHODS,
    CheckConfig,
    c2st_stat,
    feature_stats,
    gravity_stat,
)
from wearmon.errors import MonitorError
from wearmon.signals.features import FEATURE_NAMES

log = logging.getLogger(__name__)

CALIBRATION_FILE = "drift_calibration.json"
FORMAT = 1
#: threshold = margin x the largest value of a held-out normal subject. C2ST 1.5 (was 1.1):
#: calibrated on 6 of the 10 seglearn subjects, 1.1 let 7 of 51 clean checks of the other
#: four alarm, 1.5 two (docs/drift.md)
MARGINS: dict[str, float] = {"c2st": 1.5, "gravity": 1.25, "device": 1.25, "features": 1.1}
#: live checks whose newest windows come from at least this many devices get the C2ST
#: threshold calibrated on checks of that composition (:func:`mixed_c2st`)
MIXED_DEVICES: tuple[int, ...] = (2, 4, 8)
#: at most this many subjects held out together in a mixed check
MIXED_SUBJECTS = 3
#: subject combinations (at most) and draws per combination of a mixed calibration
MIXED_COMBOS = 15
MIXED_DRAWS = 2


def _chunks(n: int, size: int) -> list[slice]:
    """Chunks of ``size`` consecutive windows, half overlapping (one if n < size)."""
    if n <= size:
        return [slice(0, n)]
    step = max(1, size // 2)
    return [slice(s, s + size) for s in range(0, n - size + 1, step)]


def _subject_stats(
    x: np.ndarray, own: np.ndarray, cfg: CheckConfig, rng: np.random.Generator
) -> dict[str, Any]:
    """The statistics of one held-out subject's chunks (``own``: its rows, in order)."""
    rest = x[~own]
    if len(rest) > cfg.c2st_ref:
        ref_sample = rest[rng.choice(len(rest), cfg.c2st_ref, replace=False)]
    else:
        ref_sample = rest
    mine = x[own]
    c2st, grav, feats = [], [], {n: 0.0 for n in FEATURE_NAMES}
    for sl in _chunks(len(mine), cfg.c2st_live):
        chunk = mine[sl]
        c2st.append(c2st_stat(ref_sample, chunk, cfg))
        grav.append(gravity_stat(chunk))
        for n, v in feature_stats(rest, chunk).items():
            feats[n] = max(feats[n], v)
    dev = [gravity_stat(mine[sl]) for sl in _chunks(len(mine), cfg.device_windows)]
    return {
        "checks": len(c2st),
        "c2st": max(c2st),
        "gravity": max(grav),
        "device": max(dev),
        "features": feats,
        "c2st_all": c2st,
        "gravity_all": grav,
        "device_all": dev,
    }


def calibrate(
    features: Any,
    subjects: np.ndarray,
    *,
    cfg: CheckConfig = CheckConfig(),
    margins: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Thresholds for :func:`monitoring.drift.check` from training windows (rows in window
    order) and their subjects, by leave-one-subject-out (see the module doc)."""
    m = {**MARGINS, **(margins or {})}
    x = features[FEATURE_NAMES].to_numpy(dtype=np.float64)
    groups = np.asarray(subjects).astype(str)
    if len(groups) != len(x):
        raise MonitorError(f"calibration: {len(x)} windows but {len(groups)} subjects")
    names = sorted(set(groups.tolist()))
    if len(names) < 3:
        raise MonitorError(f"calibration needs at least 3 subjects, got {len(names)}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    per = {s: _subject_stats(x, groups == s, cfg, rng) for s in names}
    thresholds = _thresholds(per, names, m)
    mixed = {d: mixed_c2st(x, groups, names, d, cfg, rng) for d in MIXED_DEVICES}
    thresholds["c2st_devices"] = {str(k): m["c2st"] * max(v) for k, v in mixed.items() if v}
    return {
        "format": FORMAT,
        "method": "leave-one-subject-out, threshold = margin x max of held-out normal subjects",
        "config": asdict(cfg),
        "margins": m,
        "methods": FEATURE_METHODS,
        "subjects": names,
        "n_windows": len(x),
        "thresholds": thresholds,
        "per_subject": {
            s: {k: round(float(p[k]), 4) for k in ("checks", "c2st", "gravity", "device")}
            for s, p in per.items()
        },
        "held_out": held_out_rates(per, names, m),
        "mixed_checks": {str(k): len(v) for k, v in mixed.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def mixed_c2st(
    x: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    devices: int,
    cfg: CheckConfig,
    rng: np.random.Generator,
) -> list[float]:
    """C2ST statistics of checks built as a live check of ``devices`` devices is: its
    ``c2st_live`` newest windows are ``c2st_live // devices`` consecutive windows of each
    device. Here each "device" is a random stretch of a held-out subject (up to
    :data:`MIXED_SUBJECTS` subjects held out together), against a reference sample of the
    other subjects. Consecutive windows of one person are alike (one activity, one posture),
    so a check of one device is told from the reference more easily than a check that mixes
    stretches of several: each composition gets the threshold of its own null."""
    from itertools import combinations

    k = min(devices, MIXED_SUBJECTS, len(names) - 2)
    combos = list(combinations(names, k))
    if len(combos) > MIXED_COMBOS:
        combos = [combos[i] for i in rng.choice(len(combos), MIXED_COMBOS, replace=False)]
    stretch = max(cfg.folds, cfg.c2st_live // devices)
    out: list[float] = []
    for held in combos:
        rest = x[~np.isin(groups, held)]
        own = {s: np.flatnonzero(groups == s) for s in held}
        for _ in range(MIXED_DRAWS):
            ref = rest[rng.choice(len(rest), min(cfg.c2st_ref, len(rest)), replace=False)]
            parts = []
            for d in range(devices):
                rows = own[held[d % k]]
                start = int(rng.integers(0, max(1, len(rows) - stretch + 1)))
                parts.append(x[rows[start : start + stretch]])
            out.append(c2st_stat(ref, np.vstack(parts)[: cfg.c2st_live], cfg))
    return out


def _thresholds(per: Mapping[str, Any], names: list[str], m: Mapping[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: m[k] * max(float(per[s][k]) for s in names) for k in ("c2st", "gravity", "device")
    }
    out["features"] = {
        n: max(m["features"] * max(float(per[s]["features"][n]) for s in names), 1e-6)
        for n in FEATURE_NAMES
    }
    return out


def held_out_rates(
    per: Mapping[str, Any], names: list[str], m: Mapping[str, float]
) -> dict[str, Any]:
    """False alarms of each subject against thresholds set on the other subjects only."""
    checks = alarms = dev_checks = dev_alarms = 0
    alarmed: list[str] = []
    for s in names:
        others = [o for o in names if o != s]
        thr = _thresholds(per, others, m)
        p = per[s]
        a = sum(
            c / thr["c2st"] > 1.0 or g / thr["gravity"] > 1.0
            for c, g in zip(p["c2st_all"], p["gravity_all"], strict=True)
        )
        d = sum(v / thr["device"] > 1.0 for v in p["device_all"])
        checks += len(p["c2st_all"])
        alarms += a
        dev_checks += len(p["device_all"])
        dev_alarms += d
        if a:
            alarmed.append(s)
    return {
        "checks": checks,
        "false_alarms": alarms,
        "false_alarm_rate": round(alarms / checks, 4) if checks else None,
        "subjects_alarmed": alarmed,
        "device_checks": dev_checks,
        "device_false_alarms": dev_alarms,
    }


def validate(cal: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A stored calibration, checked (one-line error naming ``where`` otherwise)."""
    try:
        thr = cal["thresholds"]
        ok = all(float(thr[k]) > 0 for k in ("c2st", "gravity", "device"))
        ok = ok and all(float(thr["features"][n]) > 0 for n in FEATURE_NAMES)
    except (KeyError, TypeError, ValueError):
        ok = False
    if int(cal.get("format", 0)) != FORMAT or not ok:
        raise MonitorError(f"{where}: not a drift calibration of format {FORMAT}")
    return dict(cal)


# --- IO: the calibration of a version ---------------------------------------------------


def cache_path(settings: Any, version: str) -> Path:
    return (
        Path(settings.data_dir)
        / "monitor"
        / "calibration"
        / f"{settings.model_name}-{version}.json"
    )


def calibration_for(settings: Any, version: str, profile: Any | None) -> dict[str, Any]:
    """The calibration of a model version: stored with it, cached, or computed once now."""
    from trainer import registry

    reader = getattr(registry, "read_calibration", None)
    stored = reader(settings, version) if reader is not None else None
    if stored is not None:
        return validate(stored, f"{CALIBRATION_FILE} of version {version}")
    path = cache_path(settings, version)
    if path.is_file():
        return validate(json.loads(path.read_text()), str(path))
    if profile is not None and "subject" in profile.columns:
        log.info("version %s has no drift calibration: computing it from its profile", version)
        cal = calibrate(profile, profile["subject"].to_numpy())
    else:
        log.info("version %s has no drift calibration: computing it from the base data", version)
        frame, subjects = base_features(settings)
        cal = calibrate(frame, subjects)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal, indent=1))
    tmp.replace(path)
    return cal


def base_features(settings: Any) -> tuple[Any, np.ndarray]:
    """Window features and subjects of the base data set (seglearn), in window order."""
    from trainer.datasets import load_dataset
    from wearmon.signals.features import features_frame

    ds = load_dataset("seglearn", settings.signal)
    return features_frame(ds.x), ds.groups.astype(str)
